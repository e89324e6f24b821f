"""API keys: off by default (the audit runs as written); when GATEWAY_API_KEYS names some, every request that
changes state must carry one, through Flask's routes and the proxy alike, and no key travels further."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from .fake_upstreams import FakeUpstream, Recorder

KEY = "k" * 24
OTHER_KEY = "o" * 24
ORDER = {"user_id": 1, "number_of_items": 1, "total_amount": 1}


@pytest.fixture
def keyed(make_client, inventory):
    return make_client(api_keys=(SecretStr(KEY), SecretStr(OTHER_KEY)))


def assert_401(response) -> None:
    assert response.status_code == 401, response.data
    assert response.get_json()["error"] == "unauthorized"
    assert response.get_json()["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="crud-master"'


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/billing", ORDER), ("POST", "/api/movies", {"title": "x"}), ("PUT", "/api/movies/1", {"title": "x"}),
    ("DELETE", "/api/movies/1", None), ("DELETE", "/api/movies", None),
])
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-of-some-length"}, {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": "Bearer " + KEY[:-1]}])
def test_a_state_change_without_a_valid_key_is_401_and_goes_nowhere(keyed, amqp, config, clean_movies, method, path,
                                                                     body, headers):
    assert_401(keyed.open(path, method=method, json=body, headers=headers))
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 0


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"X-API-Key": OTHER_KEY}, {"Authorization": f"Bearer {KEY}"},
                                     {"Authorization": f"bearer {OTHER_KEY}"}])
def test_any_configured_key_lets_it_through(keyed, amqp, clean_movies, headers):
    assert keyed.post("/api/billing", json=ORDER, headers=headers).status_code == 200
    assert keyed.post("/api/movies", json={"title": "Keyed"}, headers=headers).status_code == 200


def test_reads_need_no_key(keyed, clean_movies):
    assert keyed.get("/api/movies").status_code == 200
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/docs").status_code == 200


def test_an_unknown_path_or_method_is_still_a_404_or_405(keyed):
    assert keyed.post("/nowhere").status_code == 404
    assert keyed.put("/api/billing").status_code == 405


def test_without_keys_nothing_is_asked(client, amqp, clean_movies):
    assert client.post("/api/billing", json=ORDER).status_code == 200
    assert client.delete("/api/movies").status_code == 200


def test_the_key_does_not_travel_to_the_inventory(make_client):
    recorder = Recorder()
    with FakeUpstream(recorder) as upstream:
        client = make_client(inventory_url=upstream.url, api_keys=(SecretStr(KEY),))
        assert client.put("/api/movies/1", json={"title": "x"}, headers={"X-API-Key": KEY}).status_code == 200
        assert client.put("/api/movies/1", json={"title": "x"}, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert all(KEY not in head for head in recorder.requests)


def test_keys_are_read_comma_separated_and_too_short_ones_refused():
    from crud_common.settings import SettingsError

    from .support import config_for_tests

    config = config_for_tests(GATEWAY_API_KEYS=f" {KEY} , {OTHER_KEY},")
    assert [key.get_secret_value() for key in config.gateway.api_keys] == [KEY, OTHER_KEY]
    assert KEY not in repr(config)
    with pytest.raises(SettingsError, match=r"GATEWAY_API_KEYS=\(hidden\): .* at least 16 characters") as caught:
        config_for_tests(GATEWAY_API_KEYS="short-key")
    assert "short-key" not in str(caught.value)
