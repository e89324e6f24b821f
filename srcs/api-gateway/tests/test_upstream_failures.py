"""When the inventory cannot answer, the gateway answers itself, quickly, in the shared error shape
(502 unreachable/reset, 504 too slow, 503 no free connection), and recovers without a restart."""

from __future__ import annotations

import threading
import time

import pytest

from crud_common.errors import BrokenStream

from .fake_upstreams import FakeUpstream, garbage, reset, reset_first_connection, slow
from .support import InventoryProcess


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["error"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["message"]


def failures(client, kind: str) -> float:
    """How many requests the gateway counted as failed by the inventory in this way (its metrics)."""
    registry = client.application.extensions["metrics"].registry
    return registry.get_sample_value("gateway_inventory_failures_total", {"kind": kind})


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
        assert (failures(client, "unreachable"), failures(client, "bad_answer")) == (3, 0)
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
        assert (failures(client, "timeout"), failures(client, "unreachable")) == (2, 0)
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
        assert (failures(client, "bad_answer"), failures(client, "unreachable")) == (2, 0)


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
        assert failures(client, "pool_exhausted") == 1
        # Once the connection is back in the pool, the gateway works again.
        assert client.get("/api/movies").status_code == 200


def test_a_long_answer_is_relayed_whole_with_its_length(make_client):
    body = b"[" + b",".join(b'{"id":%d}' % n for n in range(200_000)) + b"]"

    def long_answer(connection) -> None:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)

    with FakeUpstream(long_answer) as upstream:
        response = make_client(inventory_url=upstream.url).get("/api/movies")
    assert response.status_code == 200
    assert response.data == body and response.headers["Content-Length"] == str(len(body))


def cut_off(head: bytes, sent: bytes):
    def behaviour(connection) -> None:
        connection.recv(65536)
        connection.sendall(head + sent)  # then the connection closes, before the end of the body

    return behaviour


@pytest.mark.parametrize(
    ("head", "sent"),
    [(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n", b"[" + b"1," * 500),
     (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      b"400\r\n" + b"[" + b"1," * 511 + b"1\r\n")],
    ids=["content-length", "chunked"],
)
def test_an_answer_cut_off_by_the_inventory_is_cut_off_for_the_client_too(make_client, head, sent):
    # The status line and headers are already on their way to the client: the only honest signal left is to
    # close its connection before the end, which a WSGI server does when the body raises this.
    with FakeUpstream(cut_off(head, sent)) as upstream:
        client = make_client(inventory_url=upstream.url)
        with pytest.raises(BrokenStream):
            client.get("/api/movies")
        with pytest.raises(BrokenStream):
            client.get("/api/movies")  # a fresh connection: the broken one was not put back in the pool
        assert failures(client, "cut_off") == 2


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
