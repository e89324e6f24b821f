"""The front (nginx, front.py) for real, in front of the application: slow clients starve nobody, a client's
requests and connections are capped (429 with Retry-After), the application restarting is a 503 to retry,
every one of nginx's own answers is in the platform's JSON error shape with the request's id, and reads of the
catalog go straight to the inventory, answered, failed, counted and logged as the application's are."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from crud_common.testing import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

from app.front import parse_read_line, render

from .fake_upstreams import FakeUpstream, Recorder, slow
from .support import SERVICE_DIR, GatewayProcesses, accepts_connections, config_for_tests, environ_for_tests

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
    # nginx's own locations, asked for by name: internal, so a 404 of nginx's.
    (b"GET /.inventory-read HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    (b"GET /.refused/429 HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    (b"POST /api/billing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    (b"GET /api/movies HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
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


def test_a_refusal_is_logged_with_the_request_line_the_client_sent_cut_to_1024_bytes(inventory):
    # nginx hands a refused request to its error location as a GET: the line says what the client sent. A long
    # one is cut, as a read's target is, so that the line stays one atomic write to the pipe.
    long_target = "/api/billing?" + "q" * 3000
    with front(INVENTORY_URL=inventory.url) as served:
        request_ids = []
        for target in ("/api/billing", long_target):
            with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
                sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n".encode())
                answer = http.client.HTTPResponse(sock)
                answer.begin()
                assert answer.status == 413
                request_ids.append(answer.getheader("X-Request-ID"))
    assert f' front "POST /api/billing HTTP/1.1" 413 request_id={request_ids[0]} ' in served.front.output
    cut = f"POST {long_target} HTTP/1.1"[:1024] + "..."
    assert f' front "{cut}" 413 request_id={request_ids[1]} ' in served.front.output


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


def test_a_client_that_connects_while_the_front_starts_is_answered_never_reset(inventory):
    # While PM2 starts a front the port is free, then taken: a client is refused (and retries), or answered.
    port = free_port()
    answers: list[bytes | str] = []
    starting = threading.Event()
    starting.set()

    def connect_until_stopped() -> None:
        while starting.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answers.append(sock.recv(9))
            except ConnectionRefusedError:
                time.sleep(0.002)
            except OSError as exc:
                answers.append(repr(exc))

    clients = [threading.Thread(target=connect_until_stopped) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        with front(INVENTORY_URL=inventory.url, GATEWAY_PORT=str(port)):
            starting.clear()
            for client in clients:
                client.join(15)
    finally:
        starting.clear()
    assert answers and set(answers) == {b"HTTP/1.1 "}, answers


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


def test_reads_go_from_the_front_straight_to_the_inventory(inventory, clean_movies):
    created = requests.post(f"{inventory.url}/api/movies", json={"title": "Straight"}, timeout=5).json()
    with front(INVENTORY_URL=inventory.url) as served:
        # The application gone (between two of its processes, as in a restart): reads are still answered as the
        # inventory answers them, with the client's request id; a write is not, and nothing of it is done.
        served.application.stop()
        movie = requests.get(f"{served.base}/api/movies/{created['id']}", headers={"X-Request-ID": "read-1"},
                             timeout=5)
        found = requests.get(f"{served.base}/api/movies?title=straight", timeout=5)
        head = requests.head(f"{served.base}/api/movies/{created['id']}", timeout=5)
        missing = requests.get(f"{served.base}/api/movies/999999999", timeout=5)
        write = requests.post(f"{served.base}/api/movies", json={"title": "Never"}, timeout=5)
    direct = requests.get(f"{inventory.url}/api/movies/{created['id']}", timeout=5)
    assert (movie.status_code, movie.content) == (200, direct.content)
    assert movie.headers["X-Request-ID"] == "read-1" and movie.headers["Content-Type"] == "application/json"
    assert found.json() == [created] and found.headers["X-Request-ID"]
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == direct.headers["Content-Length"]
    assert missing.status_code == 404 and missing.json()["request_id"] == missing.headers["X-Request-ID"]
    assert write.status_code == 503 and "nothing was done" in write.json()["message"]
    assert [m["title"] for m in requests.get(f"{inventory.url}/api/movies", timeout=5).json()] == ["Straight"]


def test_a_read_the_inventory_fails_is_the_gateway_s_json_error(inventory):
    # Nothing listens at this INVENTORY_URL (environ_for_tests): refused, a 502.
    with front() as served:
        down = requests.get(f"{served.base}/api/movies/1", headers={"X-Request-ID": "down-1"}, timeout=10)
    assert down.status_code == 502 and down.headers["Content-Type"] == "application/json"
    assert down.json() == {"error": "bad_gateway", "message": "the inventory is unreachable or closed the connection",
                           "request_id": "down-1"}
    assert down.headers["X-Request-ID"] == "down-1"
    # An inventory that does not answer in time: a 504 once the read timeout is over, not later.
    with FakeUpstream(slow(5)) as upstream, front(INVENTORY_URL=upstream.url,
                                                  GATEWAY_INVENTORY_READ_TIMEOUT_S="0.5") as served:
        started = time.monotonic()
        late = requests.get(f"{served.base}/api/movies", timeout=10)
        waited = time.monotonic() - started
    assert late.status_code == 504 and late.json()["error"] == "gateway_timeout", late.text
    assert late.json()["message"] == "the inventory did not answer in time"
    assert 0.5 <= waited < 3, waited
    assert upstream.connections == 1  # a read that timed out is not sent again


def test_a_read_keeps_its_connection_to_the_inventory_and_drops_hop_by_hop_headers_and_the_key():
    recorder = Recorder()
    key = "a-key-of-sixteen-chars"
    with FakeUpstream(recorder) as upstream, front(INVENTORY_URL=upstream.url, GATEWAY_API_KEYS=key) as served:
        with requests.Session() as session:  # one client connection: one nginx worker, one pooled connection
            for _ in range(5):
                answer = session.get(f"{served.base}/api/movies?limit=1", headers={
                    "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c",
                    "Proxy-Authorization": "Basic eA==", "X-Api-Key": key, "Authorization": f"Bearer {key}",
                    "X-End-To-End": "sent", "Accept": "application/json"})
                assert answer.status_code == 200 and answer.headers["X-End-To-End"] == "kept"
                assert "Keep-Alive" not in answer.headers
        # Five reads, one connection to the inventory.
        assert upstream.connections == 1
    assert len(recorder.requests) == 5
    lines = recorder.requests[-1].split("\r\n")
    assert lines[0] == "GET /api/movies?limit=1 HTTP/1.1"
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:]}
    assert headers["host"] == upstream.url.removeprefix("http://") and headers["x-end-to-end"] == "sent"
    assert {"accept", "x-request-id", "x-forwarded-for"} <= headers.keys()
    assert not headers.keys() & {"keep-alive", "te", "upgrade", "proxy-authorization", "x-api-key", "authorization"}


def test_a_read_whose_connection_header_names_its_own_hop_by_hop_headers_takes_the_application_s_path():
    recorder = Recorder()
    with FakeUpstream(recorder) as upstream, front(INVENTORY_URL=upstream.url) as served:
        answer = requests.get(f"{served.base}/api/movies", headers={"Connection": "keep-alive, X-Client-Hop",
                                                                   "X-Client-Hop": "1"}, timeout=5)
        assert answer.status_code == 200
        # What the application drops and nginx could not: the upstream's own hop-by-hop header too.
        assert "X-Upstream-Hop" not in answer.headers
    assert "x-client-hop" not in recorder.requests[0].lower()
    assert "GET /api/movies 200" in served.application.output


def test_a_connection_header_cannot_pass_another_path_off_as_a_read(inventory):
    # The read map's key joins the method, the Connection header and the target: a Connection header that
    # wrote a target of its own once made a GET of any path a read, answered by the inventory.
    with front(INVENTORY_URL=inventory.url) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"GET /openapi.yaml HTTP/1.1\r\nHost: x\r\nConnection: close:/api/movies/\r\n\r\n")
            answer = http.client.HTTPResponse(sock)
            answer.begin()
            body = answer.read()
    # The gateway's own description (the inventory has none: a 404).
    assert answer.status == 200 and body.startswith(b"openapi: "), (answer.status, body[:200])


def test_a_read_s_log_line_holds_at_most_the_first_1024_characters_of_its_target(inventory):
    # Two nginx workers write one pipe: a line longer than an atomic write (4096 bytes) could interleave.
    title = "q" * 3000  # longer than the inventory takes: its 400 is a read all the same
    with front(INVENTORY_URL=inventory.url) as served:
        assert requests.get(f"{served.base}/api/movies?title={title}", timeout=5).status_code == 400
        port = served.config.metrics.port
        wait_for("the read to be counted", lambda: requests_counted(scraped(port), "/api/movies", "GET", 400) == 1)
    logged = [line for line in served.front.output.splitlines() if " gateway.access GET /api/movies?title=" in line]
    assert len(logged) == 1, logged
    target = re.search(r"GET (\S+) 400 ", logged[0])[1]
    assert target == f"/api/movies?title={title}"[:1024] + "..."


def scraped(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def requests_counted(samples: dict, route: str, method: str, status: int) -> float:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return samples.get(("http_requests_total", labels), 0.0)


def test_reads_the_front_carried_are_counted_and_logged_as_the_gateway_s(inventory, clean_movies):
    created = requests.post(f"{inventory.url}/api/movies", json={"title": "Counted"}, timeout=5).json()
    with front(INVENTORY_URL=inventory.url) as served:
        port = served.config.metrics.port
        for path in ("/api/movies", "/api/movies/", f"/api/movies/{created['id']}", "/api/movies/999999999"):
            assert requests.get(served.base + path, timeout=5).status_code in (200, 404)
        assert requests.head(f"{served.base}/api/movies", timeout=5).status_code == 200
        # A write, through the application, counted by its own process: both in the one endpoint.
        assert requests.post(f"{served.base}/api/movies", json={"title": "Written"}, timeout=5).status_code == 200
        expected = {("/api/movies", "GET", 200): 2, ("/api/movies", "HEAD", 200): 1,
                    ("/api/movies/<movie_id>", "GET", 200): 1, ("/api/movies/<movie_id>", "GET", 404): 1,
                    ("/api/movies", "POST", 200): 1}

        def counts() -> dict:
            samples = scraped(port)
            return {labels: requests_counted(samples, *labels) for labels in expected}

        # Each nginx worker writes its reads' lines every 0.2 s: wait for all of them, then assert exactly.
        wait_for("the reads to be counted", lambda: counts() == expected)
        time.sleep(0.5)
        assert counts() == expected
        samples = scraped(port)
    latency = (("method", "GET"), ("route", "/api/movies"))
    assert samples[("http_request_duration_seconds_count", latency)] == 2
    # One access line per read, the front's, in the application's shape; no refusal line of nginx for it.
    lines = served.front.output.splitlines()
    assert len([line for line in lines if " gateway.access GET /api/movies/999999999 404 " in line]) == 1
    assert any(re.search(r" gateway\.access GET /api/movies/999999999 404 \d+\.\dms request_id=\w+ "
                         r"upstream=inventory via=front upstream_status=404$", line) for line in lines), lines
    assert not any(' front "GET /api/movies/999999999' in line for line in lines)
    assert "GET /api/movies" not in served.application.output
    assert "POST /api/movies 200" in served.application.output


def test_a_read_the_inventory_failed_is_counted_as_its_kind():
    with front() as served:  # nothing at INVENTORY_URL
        port = served.config.metrics.port
        assert requests.get(f"{served.base}/api/movies", timeout=10).status_code == 502
        wait_for("the failure to be counted", lambda: scraped(port).get(
            ("gateway_inventory_failures_total", (("kind", "unreachable"),)), 0.0) == 1)
        assert requests_counted(scraped(port), "/api/movies", "GET", 502) == 1


def test_a_read_s_log_line_is_read_back_whatever_its_target_holds():
    # nginx writes the target escaped as JSON (escape=json): a quote and a backslash as \" and \\.
    line = ('front-read 200 0.004 GET request_id=abc client=10.0.0.1 upstream_status=502, 200 '
            'target=/api/movies?title=\\"x\\\\y\\"+target=z+upstream_status=x')
    read = parse_read_line(line)
    assert read is not None
    assert (read.status, read.seconds, read.method, read.request_id) == (200, 0.004, "GET", "abc")
    assert read.upstream_status == "502, 200"
    assert read.target == '/api/movies?title="x\\y"+target=z+upstream_status=x'
    # A target nginx could not have escaped so is kept as written rather than fail the relay.
    assert parse_read_line("front-read 200 0.001 GET request_id=a client=b upstream_status=200 target=/a\\"
                           ).target == "/a\\"
    assert read.upstream_failure is None
    assert parse_read_line("front-read 504 1.000 GET request_id=x client=y upstream_status=504 target=/api/movies"
                           ).upstream_failure == "timeout"
    # Refused by nginx before any try (a rate limit): not the inventory's failure.
    assert parse_read_line("front-read 429 0.000 GET request_id=x client=y upstream_status= target=/api/movies"
                           ).upstream_failure is None
    assert parse_read_line('2026-12-02T06:00:00+00:00 front "GET /x HTTP/1.1" 400 request_id=x client=y') is None


def test_an_https_inventory_is_checked_on_the_read_path_as_the_application_checks_it():
    rendered = render(config_for_tests(INVENTORY_URL="https://inventory.internal:8443/base"))
    assert "proxy_pass https://inventory_reads/base$request_uri;" in rendered
    for directive in ("proxy_ssl_server_name on;", "proxy_ssl_name inventory.internal;", "proxy_ssl_verify on;",
                      "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;"):
        assert directive in rendered
    assert "proxy_ssl_verify" not in render(config_for_tests(INVENTORY_URL="http://127.0.0.1:8080"))


def test_the_front_listens_on_an_ipv6_host_as_nginx_writes_it():
    assert "listen [::1]:3000 backlog=4096;" in render(config_for_tests(GATEWAY_HOST="::1", GATEWAY_PORT="3000"))
    assert "listen 127.0.0.1:3000 backlog=4096;" in render(config_for_tests(GATEWAY_PORT="3000"))


def test_a_configuration_nginx_refuses_stops_the_front_before_it_takes_the_port():
    # nginx resolves the inventory's host name as it reads its configuration.
    environ = environ_for_tests(INVENTORY_URL="http://inventory.invalid:8080")
    run = subprocess.run([sys.executable, "front.py"], cwd=SERVICE_DIR, env=environ, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run
    output = run.stdout + run.stderr
    assert "the front's nginx configuration" in output and "inventory.invalid" in output, output
    # The line the front writes as it takes the port never came; nothing (no nginx of it) is left listening.
    assert "front on " not in output, output
    assert not accepts_connections(int(environ["GATEWAY_PORT"]))
