"""When the inventory cannot answer, the gateway answers itself, quickly, in the shared error shape
(502 unreachable/reset, 504 too slow, 503 no free connection), and recovers without a restart."""

from __future__ import annotations

import threading
import time

import pytest

from .fake_upstreams import FakeUpstream, garbage, reset, reset_first_connection, slow
from .support import InventoryProcess


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["error"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["message"]


def test_stopped_inventory_gives_502_then_recovers_without_restart(make_client):
    inventory = InventoryProcess().start()
    try:
        client = make_client(inventory_url=inventory.url)
        assert client.get("/api/movies").status_code == 200
        inventory.stop()
        for method in ("GET", "POST", "DELETE"):
            started = time.monotonic()
            response = client.open("/api/movies/", method=method, json={"title": "x"} if method == "POST" else None)
            assert_error(response, 502, "bad_gateway")
            assert time.monotonic() - started < 3
        health = client.get("/health")
        assert health.status_code == 503 and health.get_json()["down"] == ["inventory"]
        inventory.start()  # same port
        assert client.get("/api/movies").status_code == 200
        assert client.get("/health").status_code == 200
    finally:
        inventory.stop()


def test_slow_inventory_gives_504_within_the_read_timeout(make_client):
    with FakeUpstream(slow(3)) as upstream:
        client = make_client(inventory_url=upstream.url, inventory_read_timeout_s=0.5)
        started = time.monotonic()
        response = client.get("/api/movies")
        elapsed = time.monotonic() - started
        assert_error(response, 504, "gateway_timeout")
        assert elapsed < 2
        # A non-idempotent request is never sent twice.
        before = upstream.connections
        assert_error(client.post("/api/movies", json={"title": "x"}), 504, "gateway_timeout")
        assert upstream.connections == before + 1
        # /health is bounded too.
        started = time.monotonic()
        assert client.get("/health").status_code == 503
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("behaviour", [reset, garbage], ids=["reset", "garbage"])
def test_broken_inventory_gives_502(make_client, behaviour):
    with FakeUpstream(behaviour) as upstream:
        client = make_client(inventory_url=upstream.url)
        assert_error(client.get("/api/movies/1"), 502, "bad_gateway")
        assert_error(client.put("/api/movies/1", json={"title": "x"}), 502, "bad_gateway")


def test_exhausted_connection_pool_gives_503(make_client):
    with FakeUpstream(slow(2)) as upstream:
        # One thread, one pooled connection: a second concurrent request finds none free.
        client = make_client(inventory_url=upstream.url, threads=1, inventory_connect_timeout_s=0.3,
                             inventory_read_timeout_s=5)
        holder = threading.Thread(target=lambda: client.get("/api/movies"))
        holder.start()
        deadline = time.monotonic() + 2
        while upstream.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            assert_error(client.get("/api/movies"), 503, "service_unavailable")
        finally:
            holder.join()
        # Once the connection is back in the pool, the gateway works again.
        assert client.get("/api/movies").status_code == 200


def test_oversized_inventory_answer_gives_502_and_the_pool_recovers(make_client):
    def huge(connection) -> None:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
                           + b"x" * 4096)

    with FakeUpstream(huge) as upstream:
        client = make_client(inventory_url=upstream.url, max_upstream_body_bytes=1024)
        assert_error(client.get("/api/movies"), 502, "bad_gateway")
        assert_error(client.get("/api/movies"), 502, "bad_gateway")  # not a half-read connection reused


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_a_reset_idempotent_request_is_retried_once(make_client, method):
    with FakeUpstream(reset_first_connection()) as upstream:
        client = make_client(inventory_url=upstream.url)
        response = client.open("/api/movies/1", method=method, json={"title": "x"} if method == "PUT" else None)
        assert response.status_code == 200, response.data
        assert upstream.connections == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_reset_non_idempotent_request_is_never_sent_again(make_client, method):
    with FakeUpstream(reset_first_connection()) as upstream:
        client = make_client(inventory_url=upstream.url)
        assert_error(client.open("/api/movies", method=method, json={"title": "x"}), 502, "bad_gateway")
        assert upstream.connections == 1
