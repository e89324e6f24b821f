"""server.py for real: gunicorn serves the gateway over HTTP in front of the real inventory, refuses bad
settings, stops cleanly on SIGTERM, and what only a real socket can send (a cut upload, broken chunks, too many
headers) is answered right. (What gunicorn itself refuses, in the JSON error shape, is crud_common's.)"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from crud_common.testing import raw_exchange

from .fake_upstreams import FakeUpstream
from .support import SERVICE_DIR, GatewayProcesses, environ_for_tests
from .test_upstream_failures import cut_off


@contextmanager
def serving(**settings: str) -> Iterator[GatewayProcesses]:
    """The gateway as PM2 runs it (front.py and server.py) on a free port; their output (every log line) is in
    `.output` once they stopped."""
    environ = environ_for_tests(GATEWAY_WORKERS="1", GATEWAY_THREADS="4", **settings)
    with GatewayProcesses(environ) as served:
        yield served


def test_server_serves_over_http_and_exits_0_on_sigterm(inventory, amqp, clean_movies):
    with serving(INVENTORY_URL=inventory.url) as server:
        base = server.base
        assert requests.get(f"{base}/health", timeout=10).status_code == 200
        created = requests.post(f"{base}/api/movies/", json={"title": "A new movie"}, timeout=5)
        assert created.status_code == 200
        assert created.headers["Location"] == f"/api/movies/{created.json()['id']}"
        # One Server and one Date header (the front's), whatever the inventory sent.
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", f"/api/movies/{created.json()['id']}")
        answer = connection.getresponse()
        assert answer.status == 200 and len(answer.headers.get_all("Date")) == 1
        assert len(answer.headers.get_all("Server")) == 1
        connection.close()
        # The raw path goes on as sent: an encoded slash stays one (the inventory rejects it as an id).
        encoded = requests.get(f"{base}/api/movies/1%2F2", timeout=5)
        assert encoded.status_code == requests.get(f"{inventory.url}/api/movies/1%2F2", timeout=5).status_code
        order = requests.post(f"{base}/api/billing/",
                              json={"user_id": "3", "number_of_items": "5", "total_amount": "180"}, timeout=10)
        assert order.status_code == 200 and order.json()["message"] == "Message posted"
        chunked = requests.post(f"{base}/api/billing", data=iter([b'{"user_id": "', b"1" * 70_000, b'"}']),
                                headers={"Content-Type": "application/json"}, timeout=5)
        assert chunked.status_code == 413 and chunked.json()["error"] == "payload_too_large"
        proxied_chunked = requests.post(f"{base}/api/movies", data=iter([b'{"title": "', b"x" * 70_000, b'"}']),
                                        headers={"Content-Type": "application/json"}, timeout=5)
        assert proxied_chunked.status_code == 413
        scraped = requests.get(f"http://127.0.0.1:{server.config.metrics.port}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert 'http_requests_total{method="POST",route="/api/movies",status="200"} 1.0' in scraped.text
        assert 'http_requests_total{method="POST",route="/api/billing",status="200"} 1.0' in scraped.text
        assert 'gateway_order_publishes_total{outcome="confirmed"} 1.0' in scraped.text
        assert 'gateway_inventory_failures_total{kind="unreachable"} 0.0' in scraped.text
        # Only on the metrics address: the public port has no /metrics.
        assert requests.get(f"{base}/metrics", timeout=5).status_code == 404
    assert server.returncodes == (0, 0), server.output
    assert "POST /api/billing/ 200 " in server.output and "upstream=rabbitmq" in server.output
    assert "POST /api/movies/ 200 " in server.output and "upstream=inventory" in server.output


def test_server_refuses_to_start_with_bad_settings():
    # An empty variable counts as set for python-dotenv, so .env cannot fill it in.
    env = environ_for_tests(GATEWAY_PORT="not-a-port", INVENTORY_URL="ftp://x", RABBITMQ_HOST="")
    result = subprocess.run([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "GATEWAY_PORT='not-a-port'" in output and "INVENTORY_URL='ftp://x'" in output
    assert "RABBITMQ_HOST is not set" in output
    assert env["RABBITMQ_PASSWORD"] not in output


ORDER_BODY = b'{"user_id": "3", "number_of_items": "5", "total_amount": "180"}'
MOVIE_BODY = b'{"title": "Should never exist"}'


@pytest.mark.parametrize("path, body", [("/api/billing", ORDER_BODY), ("/api/movies", MOVIE_BODY)])
def test_a_body_shorter_than_its_content_length_goes_nowhere(inventory, amqp, config, clean_movies, path, body):
    # The front reads a body whole before the application sees anything: a client that gives up in the middle is
    # dropped by nginx (it has gone, so no answer), and nothing is forwarded. (The application's own 400 for such a
    # body, were it reached directly, is crud_common.bodies'.)
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) + 10}\r\n\r\n").encode()
    with serving(INVENTORY_URL=inventory.url) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            sock.sendall(head + body)
            sock.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
    assert f"POST {path}" not in server.application.output  # never reached the application
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 0
    assert requests.get(f"{inventory.url}/api/movies", timeout=5).json() == []


@pytest.mark.parametrize("path", ["/api/billing", "/api/movies"])
@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{\"user_id\r\n0\r\n\r\n"])
def test_a_malformed_chunked_body_is_400_without_a_traceback(inventory, amqp, config, clean_movies, path, chunks):
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    with serving(INVENTORY_URL=inventory.url) as server:
        answer = raw_exchange(server.port, head + chunks, half_close=True)
    assert answer.status == 400, answer
    assert answer.json()["error"] == "bad_request" and answer.json()["request_id"] == answer.headers["X-Request-ID"]
    assert "Traceback" not in server.output and " ERROR " not in server.output, server.output
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 0
    assert requests.get(f"{inventory.url}/api/movies", timeout=5).json() == []


def test_no_request_can_forge_or_corrupt_a_log_line(inventory):
    forged = "2026-12-01 00:00:00,000 INFO gateway.access GET / 200"
    with serving(INVENTORY_URL=inventory.url) as server:
        for path in (f"/api/movies/1%0A{forged}", f"/nope%0D%0A{forged}", "/x%01y%1b[2J", "/nul%00"):
            assert requests.get(server.base + path, timeout=5).status_code in (400, 404)
    lines = server.output.splitlines()
    assert not any(line.startswith("2026-12-01 00:00:00,000") for line in lines), server.output
    assert "\x00" not in server.output and "\x1b" not in server.output and "\r" not in server.output
    # The proxied path is logged as the raw target the client sent (escapes and all), the others decoded, escaped.
    assert any("GET /api/movies/1%0A2026-12-01" in line for line in lines), server.output
    assert any("/nope\\x0d\\x0a2026-12-01" in line for line in lines), server.output
    assert any("/x\\x01y\\x1b[2J" in line for line in lines), server.output


def test_the_whole_list_streams_through_and_a_cut_off_one_stays_cut_off(inventory, clean_movies):
    for n in range(3):
        assert requests.post(f"{inventory.url}/api/movies", json={"title": f"Film {n}"}, timeout=5).status_code == 200
    with serving(INVENTORY_URL=inventory.url) as server:
        assert [m["title"] for m in requests.get(f"{server.base}/api/movies/", timeout=10).json()] == [
            "Film 0", "Film 1", "Film 2"]
    # An inventory that dies in the middle of a streamed list: the client's connection ends without the final
    # chunk, so no HTTP client can take the part it got for the whole list.
    chunked = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    with FakeUpstream(cut_off(chunked, b"2000\r\n[" + b"1," * 4095 + b"1\r\n")) as upstream:
        with serving(INVENTORY_URL=upstream.url) as server:
            response = requests.get(f"{server.base}/api/movies", stream=True, timeout=10)
            assert response.status_code == 200 and response.headers["Transfer-Encoding"] == "chunked"
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                b"".join(response.iter_content(65536))
    # The read went from the front straight to the inventory: nginx says what happened.
    assert "upstream prematurely closed connection" in server.output, server.output
    assert "Traceback" not in server.output


def test_the_http_server_s_limits_are_the_same_behind_the_gateway(inventory, clean_movies):
    # Requests at the edge of what the gateway's HTTP server takes are answered by the inventory (200) or refused
    # by the gateway itself (by its HTTP server, or by the proxy with the client's id): never the inventory's
    # 431, relayed with the gateway's X-Request-ID over a body that carries the inventory's own id.
    with serving(INVENTORY_URL=inventory.url) as server:
        for count in (90, 94, 95, 96, 97, 98):
            head = b"".join(b"X-Extra-%d: 1\r\n" % n for n in range(count))
            request = b"GET /api/movies HTTP/1.1\r\nHost: x\r\nX-Request-ID: edge-%d\r\n" % count
            answer = raw_exchange(server.port, request + head + b"Connection: close\r\n\r\n")
            assert answer.status in (200, 431), answer
            if answer.status == 431:
                assert answer.json()["request_id"] == answer.headers["X-Request-ID"], answer
