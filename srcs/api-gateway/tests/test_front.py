"""The front (nginx, front.py) for real, in front of the application: slow clients starve nobody, a client's
requests and connections are capped (429 with Retry-After), the application restarting is a 503 to retry, and
every one of nginx's own answers is in the platform's JSON error shape with the request's id."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from crud_common.testing import free_port, wait_for

from .fake_upstreams import FakeUpstream, slow
from .support import GatewayProcesses, environ_for_tests

HEADER_TIMEOUT_S = 2


@contextmanager
def front(**settings: str) -> Iterator[GatewayProcesses]:
    environ = environ_for_tests(GATEWAY_WORKERS="1", GATEWAY_THREADS="4",
                                GATEWAY_CLIENT_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
                                GATEWAY_CLIENT_BODY_TIMEOUT_S=str(HEADER_TIMEOUT_S), **settings)
    with GatewayProcesses(environ) as served:
        yield served


def open_connections(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def closed_by_the_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        while data := sock.recv(65536):  # an answer (a 408), then the close
            del data
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_clients_that_send_a_byte_and_stop_starve_nobody_and_are_closed(inventory):
    # More connections than the application has threads (4), each holding a started request: behind the front
    # none of them reaches a thread, and each is closed once the header timeout is over.
    with front(INVENTORY_URL=inventory.url) as served:
        stalled = open_connections(served.port, 20, b"G")
        trickling = open_connections(served.port, 16, b"GET /health HTTP/1.1\r\nHost: x\r\n")
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for sock in trickling:
                    try:
                        sock.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
                stop.wait(0.5)

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            for _ in range(5):
                assert requests.get(f"{served.base}/health", timeout=5).status_code == 200
                assert requests.get(f"{served.base}/api/movies?limit=1", timeout=5).status_code == 200
            for sock in stalled + trickling:
                wait_for("the front to close a slow connection", lambda sock=sock: closed_by_the_server(sock),
                         timeout_s=HEADER_TIMEOUT_S * 10)
        finally:
            stop.set()
            feeder.join()
            for sock in stalled + trickling:
                sock.close()
    assert "X-Slow" not in served.application.output and served.application.output.count("GET /health") == 5


def test_a_body_that_stalls_is_dropped_before_the_application_sees_it(inventory, amqp, config):
    with front(INVENTORY_URL=inventory.url) as served:
        [sock] = open_connections(served.port, 1, b"POST /api/billing HTTP/1.1\r\nHost: x\r\n"
                                                  b"Content-Type: application/json\r\nContent-Length: 60\r\n\r\n{")
        wait_for("the front to drop the stalled upload", lambda: closed_by_the_server(sock),
                 timeout_s=HEADER_TIMEOUT_S * 10)
        sock.close()
        assert requests.get(f"{served.base}/health", timeout=5).status_code == 200
    assert "POST /api/billing" not in served.application.output
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def pipelined(port: int, count: int) -> list[Answer]:
    """`count` GET /health sent at once on one connection (HTTP/1.1 pipelining), and their answers in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        reader = sock.makefile("rb")
        answers = []
        for _ in range(count):
            status = int(reader.readline().split()[1])
            headers = {}
            while (line := reader.readline().decode("latin-1").strip()):
                name, _, value = line.partition(": ")
                headers[name.lower()] = value
            answers.append(Answer(status, headers, reader.read(int(headers["content-length"]))))
    return answers


def test_a_client_over_its_rate_gets_429_with_retry_after(inventory):
    with front(INVENTORY_URL=inventory.url, GATEWAY_RATE_LIMIT_PER_S="2", GATEWAY_RATE_LIMIT_BURST="3") as served:
        answers = pipelined(served.port, 20)
        statuses = [answer.status for answer in answers]
        # The burst goes through at once, then the rest of what came in the same instant is refused.
        assert statuses[:3] == [200] * 3 and statuses.count(200) <= 4 and 429 in statuses, statuses
        refused = next(answer for answer in answers if answer.status == 429)
        assert refused.headers["retry-after"] == "1" and refused.headers["content-type"] == "application/json"
        assert b'"error":"too_many_requests"' in refused.body
        assert refused.headers["x-request-id"].encode() in refused.body
        time.sleep(2.5)  # the bucket refills at the configured rate
        assert requests.get(f"{served.base}/health", timeout=5).status_code == 200


def test_a_client_over_its_connection_cap_gets_429():
    with FakeUpstream(slow(3)) as upstream, front(INVENTORY_URL=upstream.url,
                                                   GATEWAY_MAX_CONNECTIONS_PER_CLIENT="2") as served:
        waiting = open_connections(served.port, 2, b"GET /api/movies HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for("both requests in progress", lambda: upstream.connections >= 2)
        third = requests.get(f"{served.base}/api/movies", timeout=10)
        assert third.status_code == 429 and third.json()["error"] == "too_many_requests"
        for sock in waiting:
            sock.close()


def test_the_application_restarting_is_a_503_to_retry_and_nothing_is_done(inventory, amqp, config):
    with front(INVENTORY_URL=inventory.url) as served:
        served.application.stop()
        order = requests.post(f"{served.base}/api/billing", json={"user_id": 1, "number_of_items": 1,
                                                                   "total_amount": 1}, timeout=10)
        assert order.status_code == 503 and order.headers["Retry-After"] == "1"
        assert order.json()["error"] == "service_unavailable" and "nothing was done" in order.json()["message"]
        assert order.json()["request_id"] == order.headers["X-Request-ID"]
        assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 0
        served.application.start()
        assert requests.get(f"{served.base}/health", timeout=10).status_code == 200


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /nul%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
    (b"GET /?" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"POST /api/billing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n", 413,
     "payload_too_large"),
])
def test_the_front_s_own_answers_are_json_with_the_request_id(inventory, request_bytes, status, code):
    with front(INVENTORY_URL=inventory.url) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(request_bytes)
            answer = http.client.HTTPResponse(sock)
            answer.begin()
            body = answer.read()
    assert (answer.status, answer.getheader("Content-Type")) == (status, "application/json")
    assert f'"error":"{code}"'.encode() in body
    assert answer.getheader("X-Request-ID").encode() in body


def test_pm2_s_stop_is_nginx_s_graceful_one_the_request_in_flight_is_answered():
    # PM2 stops every app with SIGTERM, nginx's fast stop; front.py passes it on as SIGQUIT, the graceful one.
    with FakeUpstream(slow(4)) as upstream, front(INVENTORY_URL=upstream.url) as served:
        in_flight: list[requests.Response] = []
        request = threading.Thread(target=lambda: in_flight.append(
            requests.get(f"{served.base}/api/movies", timeout=30)))
        request.start()
        wait_for("the request to reach the inventory", lambda: upstream.connections >= 1)
        served.front.process.terminate()
        wait_for("the front to stop listening", lambda: _refused(served.port), timeout_s=10)
        request.join(timeout=30)
        assert [answer.status_code for answer in in_flight] == [200]
        assert served.front.process.wait(timeout=30) == 0


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except TimeoutError:
        return False  # the SYN dropped while the front hands its last queued connections to nginx
    return False


TRACED_PATHS = ["/api/movies", "/api/movies/", "/api/movies?limit=1", "/api/movies/7", "/api/movies/7/x",
                "/api/billing", "/api/billing/", "/health", "/openapi.yaml", "/docs", "/docs/",
                "/docs/swagger-initializer.js", "/docs/swagger-ui.css", "/nope", "/api/billingx", "/healthz",
                "/health/x"]


def test_trace_refused_by_nginx_says_what_the_gateway_allows_on_the_path(inventory, client):
    # nginx refuses TRACE before any location; its 405 (or 404) must be the one the gateway itself would give.
    with front(INVENTORY_URL=inventory.url) as served:
        for path in TRACED_PATHS:
            by_front = requests.request("TRACE", f"{served.base}{path}", timeout=10)
            by_gateway = client.open(path, method="TRACE")
            assert by_front.status_code == by_gateway.status_code, path
            assert by_front.json()["error"] == by_gateway.get_json()["error"], path
            allowed = {method.strip() for method in by_front.headers.get("Allow", "").split(",") if method.strip()}
            expected = {method.strip() for method in by_gateway.headers.get("Allow", "").split(",") if method.strip()}
            assert allowed == expected, path
            assert by_front.json()["request_id"] == by_front.headers["X-Request-ID"]


def test_a_stopping_listener_drops_new_syns_and_keeps_what_is_queued():
    from front import Listener

    listener = Listener("127.0.0.1", free_port())
    port = listener.socket.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    taken, _ = listener.socket.accept()  # one taken, as nginx would; two left in the queue
    assert listener.waiting() == 2
    nginx_copy = socket.socket(fileno=os.dup(listener.socket.fileno()))
    try:
        # Nobody takes the two within the time given: drain says so rather than hide it.
        assert listener.drain(timeout_s=0.3) == 2
        with pytest.raises(TimeoutError):  # a new SYN is dropped (its client retries it a second later)
            socket.create_connection(("127.0.0.1", port), timeout=1)
        # What was queued is still there for nginx's copy of the socket to take: nothing was reset.
        nginx_copy.settimeout(1)
        for _ in range(2):
            nginx_copy.accept()[0].close()
    finally:
        nginx_copy.close()
        taken.close()
        for sock in clients:
            sock.close()


def test_a_stopping_listener_lets_a_handshake_under_way_complete():
    # With TCP_DEFER_ACCEPT the kernel completes a handshake only when the client's first data arrives: its
    # client, connected already, sends its request after the stop began. That segment must pass, and the
    # connection be queued for nginx to take; dropped, the client would be reset when the socket closes.
    import threading

    from front import Listener

    listener = Listener("127.0.0.1", free_port())
    listener.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    port = listener.socket.getsockname()[1]
    nginx_copy = socket.socket(fileno=os.dup(listener.socket.fileno()))
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    left: list[int] = []
    try:
        assert listener.waiting() == 0  # the handshake is under way: nothing is queued yet
        draining = threading.Thread(target=lambda: left.append(listener.drain(timeout_s=5)))
        draining.start()
        time.sleep(0.2)  # the filter is on
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        nginx_copy.settimeout(3)
        accepted, _ = nginx_copy.accept()
        with accepted:
            accepted.settimeout(3)
            assert accepted.recv(100).startswith(b"GET / HTTP/1.1")
        draining.join(10)
        assert left == [0]
    finally:
        nginx_copy.close()
        client.close()


def proxied(port: int, client: str, requests_bytes: bytes) -> list[int]:
    """Statuses of the requests sent on one connection that the balancer opened for `client` (PROXY protocol)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n".encode() + requests_bytes)
        reader = sock.makefile("rb")
        statuses = []
        while status_line := reader.readline():
            statuses.append(int(status_line.split()[1]))
            length = 0
            while (line := reader.readline().decode("latin-1").strip()):
                name, _, value = line.partition(": ")
                length = int(value) if name.lower() == "content-length" else length
            reader.read(length)
            if len(statuses) == requests_bytes.count(b"HTTP/1.1"):
                break
    return statuses


def test_behind_the_balancer_each_client_is_limited_by_its_own_address(inventory):
    # TOPOLOGY=ha: HAProxy opens every connection with the PROXY protocol header naming the client.
    with front(INVENTORY_URL=inventory.url, GATEWAY_BEHIND_PROXY_PROTOCOL="true", GATEWAY_RATE_LIMIT_PER_S="2",
               GATEWAY_RATE_LIMIT_BURST="3") as served:
        first = proxied(served.port, "10.0.0.1", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
        assert first[:3] == [200] * 3 and 429 in first, first
        # Another client, through the same balancer at the same moment, has its own bucket.
        assert proxied(served.port, "10.0.0.2", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") == [200]
        # A connection that does not come through the balancer is not served.
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{served.base}/health", timeout=5)
