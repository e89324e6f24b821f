"""server.py for real: gunicorn serves the app over HTTP, refuses bad settings, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import text

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
    (b"GET /api/movies?title=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
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
        assert created.status_code == 200
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
    assert "POST /api/movies/ 200" in output


def test_server_refuses_to_start_with_bad_settings():
    env = test_environment(INVENTORY_PORT="not-a-port")
    result = subprocess.run([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "INVENTORY_PORT='not-a-port'" in result.stdout + result.stderr


@dataclass
class Server:
    base: str
    port: int
    process: subprocess.Popen[str]
    output: str = ""


@contextmanager
def serving(**settings: str) -> Iterator[Server]:
    """server.py under gunicorn on a free port; its output (every log line) is in `.output` once it stopped."""
    port = free_port()
    env = test_environment(INVENTORY_HOST="127.0.0.1", INVENTORY_PORT=str(port), INVENTORY_WORKERS="1", **settings)
    process = subprocess.Popen([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Server(f"http://127.0.0.1:{port}", port, process)
    try:
        wait_for_health(f"{server.base}/health")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        server.output, _ = process.communicate(timeout=30)


def raw_answer(port: int, request: bytes, *, half_close: bool = False) -> bytes:
    """The bytes the server answers to `request`; with half_close, the client then closes its sending side,
    as a client that gave up in the middle of its upload does."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and half_close is False and answer.endswith(b"}\n"):
                break
    return answer


def movie_count(admin_engine) -> int:
    with admin_engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM movies")).scalar_one()


@pytest.fixture
def empty_movies(admin_engine):
    with admin_engine.begin() as connection:
        connection.execute(text("TRUNCATE movies RESTART IDENTITY"))
    yield
    with admin_engine.begin() as connection:
        connection.execute(text("TRUNCATE movies RESTART IDENTITY"))


def test_a_body_shorter_than_its_content_length_is_400_and_nothing_is_stored(admin_engine, empty_movies):
    body = b'{"title": "Half"}'
    request = (b"POST /api/movies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body) + 20).encode() + b"\r\n\r\n" + body)
    with serving() as server:
        answer = raw_answer(server.port, request, half_close=True)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"shorter than its Content-Length (17 of 37 bytes)" in answer
    assert movie_count(admin_engine) == 0


@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{\"title\r\n0\r\n\r\n", b"3\r\n{}}XX"])
def test_a_malformed_chunked_body_is_400_without_a_traceback(admin_engine, empty_movies, chunks):
    request = (b"POST /api/movies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    with serving() as server:
        answer = raw_answer(server.port, request, half_close=True)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b'"error":"bad_request"' in answer and b"chunked" in answer
    assert "Traceback" not in server.output and "ERROR" not in server.output, server.output
    assert movie_count(admin_engine) == 0


def test_no_request_can_forge_or_corrupt_a_log_line(empty_movies):
    with serving() as server:
        for path in ("/api/movies/1%0A2026-12-01 00:00:00,000 INFO inventory.access FORGED", "/x%00y%1b[2J"):
            assert requests.get(server.base + path, timeout=5).status_code in (400, 404)
    lines = server.output.splitlines()
    assert not any(line.startswith("2026-12-01 00:00:00,000") for line in lines), server.output
    assert "\x00" not in server.output and "\x1b" not in server.output
    assert any("/api/movies/1\\x0a2026-12-01" in line for line in lines), server.output
    assert any("/x\\x00y\\x1b[2J" in line for line in lines), server.output


def test_a_list_cut_off_by_a_database_failure_never_looks_complete(relay, admin_engine, empty_movies):
    # Far more than the socket buffers hold, so the server is still reading batches when the database goes.
    with admin_engine.begin() as connection:
        connection.execute(text("INSERT INTO movies (title, description) SELECT 'Movie ' || n, 'd' "
                                "FROM generate_series(1, 400000) AS n"))
    relay.start()
    with serving(INVENTORY_DB_HOST="127.0.0.1", INVENTORY_DB_PORT=str(relay.port)) as server:
        response = requests.get(f"{server.base}/api/movies", stream=True, timeout=30)
        assert response.status_code == 200 and response.headers["Transfer-Encoding"] == "chunked"
        received = response.raw.read(65536)
        relay.stop()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in response.iter_content(65536):
                received += chunk
        assert not received.endswith(b"]\n")
        assert requests.get(f"{server.base}/health", timeout=10).status_code == 503
    assert "list of movies cut off after id" in server.output, server.output
    assert "Traceback" not in server.output
