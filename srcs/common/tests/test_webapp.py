"""What a Flask service gets from its factory: request ids, the access line, one error shape for everything."""

from __future__ import annotations

import pytest


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["error"] == code and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_a_json_body_is_read_and_a_request_logged_once(client, caplog):
    caplog.set_level("INFO", logger="test.access")
    response = client.post("/echo", json={"a": 1}, headers={"X-Request-ID": "trace-1"})
    assert response.get_json() == {"a": 1} and response.headers["X-Request-ID"] == "trace-1"
    client.get("/nope", headers={"X-Request-ID": "trace-2"})
    lines = [record.getMessage() for record in caplog.records if record.name == "test.access"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /echo 200 ") and lines[0].endswith("request_id=trace-1 upstream=echo")
    assert lines[1].startswith("GET /nope 404 ") and lines[1].endswith("request_id=trace-2 upstream=-")


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"data": b"{", "content_type": "application/json"}, 400, "bad_request"),
    ({"data": b"[]", "content_type": "application/json"}, 400, "bad_request"),
    ({"data": b"{}", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ({"data": b"{" + b" " * 2000 + b"}", "content_type": "application/json"}, 413, "payload_too_large"),
])
def test_bodies_that_are_not_a_json_object_within_the_limit(client, kwargs, status, code):
    body = assert_error(client.post("/echo", **kwargs), status, code)
    assert body["details"][0]["field"] in ("body", "Content-Type")


def test_routing_errors_are_json_with_allow(client):
    assert_error(client.get("//echo"), 404, "not_found")
    response = client.get("/echo")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_query_parameters_are_strict(client):
    assert client.get("/page?size=3").get_json() == {"size": 3}
    assert assert_error(client.get("/page?size=3&size=4"), 400, "validation_error")["details"][0] == {
        "field": "size", "reason": "must be given at most once"}
    assert assert_error(client.get("/page?colour=red"), 400, "validation_error")["details"][0]["reason"] == "unknown field"
    refused = assert_error(client.delete("/everything?title=x"), 400, "validation_error")
    assert refused["details"][0]["reason"].startswith("unknown parameter")


def test_a_service_s_own_failures_and_the_unexpected(client, caplog):
    assert_error(client.get("/teapot"), 503, "service_unavailable")
    body = assert_error(client.get("/boom"), 500, "internal_error")
    assert "secret" not in body["message"]
    assert "secret internals" in caplog.text
