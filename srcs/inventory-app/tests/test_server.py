"""server.py for real: gunicorn serves the app over HTTP, refuses bad settings, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import requests

from .support import SERVICE_DIR, test_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, deadline_s: float = 20) -> requests.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def raw_exchange(port: int, request: bytes) -> tuple[int, str, dict]:
    """Send bytes no HTTP client library would send; return the status, Content-Type and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), json.loads(body)


# Requests gunicorn refuses before the app sees them: still the JSON error shape, never an HTML page.
UNPARSABLE_REQUESTS = [
    (b"GET /api/movies?title=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /api/movies HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431,
     "request_header_fields_too_large"),
    (b"GET /api/movies HTTP/1.1\r\nHost: x\r\n" + b"X-Many: z\r\n" * 200 + b"\r\n", 431,
     "request_header_fields_too_large"),
    (b"NOT A REQUEST LINE\r\n\r\n", 400, "bad_request"),
]


def test_server_serves_over_http_and_exits_0_on_sigterm(migrated_database):
    port = free_port()
    env = test_environment(INVENTORY_HOST="127.0.0.1", INVENTORY_PORT=str(port), INVENTORY_WORKERS="1")
    process = subprocess.Popen([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for_health(f"{base}/health").status_code == 200
        created = requests.post(f"{base}/api/movies/", json={"title": "A new movie",
                                                              "description": "Very short description"}, timeout=5)
        assert created.status_code == 201
        assert created.headers["Location"] == f"/api/movies/{created.json()['id']}"
        # Malformed input over a real socket: still JSON, still no 500.
        broken = requests.post(f"{base}/api/movies", data=b"{", headers={"Content-Type": "application/json"},
                               timeout=5)
        assert broken.status_code == 400 and broken.json()["error"] == "bad_request"
        chunked = requests.post(f"{base}/api/movies", data=iter([b'{"title": "', b"x" * 70_000, b'"}']),
                                headers={"Content-Type": "application/json"}, timeout=5)
        assert chunked.status_code == 413 and chunked.json()["error"] == "payload_too_large"
        for request, status, code in UNPARSABLE_REQUESTS:
            answer = raw_exchange(port, request)
            assert answer[:2] == (status, "application/json"), (request[:40], answer)
            assert answer[2]["error"] == code and answer[2]["message"] and answer[2]["request_id"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "POST /api/movies/ 201" in output


def test_server_refuses_to_start_with_bad_settings():
    env = test_environment(INVENTORY_PORT="not-a-port")
    result = subprocess.run([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "INVENTORY_PORT='not-a-port'" in result.stdout + result.stderr
