"""gunicorn inside a service's process, for real: its own refusals in the JSON error shape, and a clean stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from crud_common.testing import free_port, http_status, wait_for

SERVER = """
import sys
from crud_common.logs import configure_logging
from crud_common.serving import GunicornServer

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

configure_logging()
GunicornServer(lambda: app, name="test_app", bind=f"127.0.0.1:{sys.argv[1]}", workers=1, threads=2, keepalive=2).run()
"""


@pytest.fixture(scope="module")
def server():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    wait_for("the test server to answer", lambda: http_status(f"http://127.0.0.1:{port}/") == 200)
    yield port, process
    if process.poll() is None:
        process.kill()


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), json.loads(body)


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /?q=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: z\r\n" * 120 + b"\r\n", 431, "request_header_fields_too_large"),
    (b"NOT A REQUEST LINE\r\n\r\n", 400, "bad_request"),
    (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
])
def test_what_the_http_server_refuses_is_answered_in_the_json_error_shape(server, request_bytes, status, code):
    answered, headers, body = exchange(server[0], request_bytes)
    assert (answered, headers["Content-Type"]) == (status, "application/json")
    assert body["error"] == code and body["message"] and len(body["message"]) <= 200
    assert body["request_id"] == headers["X-Request-ID"]


def test_sigterm_stops_it_cleanly_with_its_log_escaped(server):
    port, process = server
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Listening at: http://127.0.0.1" in output and "Shutting down: Master" in output
    assert "\x00" not in output
