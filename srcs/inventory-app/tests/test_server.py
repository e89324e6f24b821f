"""server.py for real: gunicorn serves the app over HTTP, refuses bad settings, stops cleanly on SIGTERM, and
what only a real socket can send (a cut upload, broken chunks, a list cut off mid-way) is answered right.
(What gunicorn itself refuses, in the JSON error shape, is crud_common's, tested in its own suite.)"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from crud_common.testing import Served, free_port, raw_exchange
from sqlalchemy import text

from .support import SERVICE_DIR, environ_for_tests


@contextmanager
def serving(**settings: str) -> Iterator[Served]:
    """server.py under gunicorn on a free port; its output (every log line) is in `.output` once it stopped."""
    port = free_port()
    environ = environ_for_tests(INVENTORY_HOST="127.0.0.1", INVENTORY_PORT=str(port), INVENTORY_WORKERS="1",
                                **settings)
    with Served(SERVICE_DIR, sys.executable, environ, port) as served:
        yield served


def test_server_serves_over_http_and_exits_0_on_sigterm(migrated_database):
    with serving() as server:
        assert requests.get(f"{server.base}/health", timeout=5).status_code == 200
        created = requests.post(f"{server.base}/api/movies/", json={"title": "A new movie",
                                                                     "description": "Very short description"}, timeout=5)
        assert created.status_code == 200
        assert created.headers["Location"] == f"/api/movies/{created.json()['id']}"
        chunked = requests.post(f"{server.base}/api/movies", data=iter([b'{"title": "', b"x" * 70_000, b'"}']),
                                headers={"Content-Type": "application/json"}, timeout=5)
        assert chunked.status_code == 413 and chunked.json()["error"] == "payload_too_large"
        scraped = requests.get(f"http://127.0.0.1:{server.environ['INVENTORY_METRICS_PORT']}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert 'http_requests_total{method="POST",route="/api/movies",status="200"} 1.0' in scraped.text
        assert 'http_requests_total{method="POST",route="/api/movies",status="413"} 1.0' in scraped.text
        assert 'inventory_database_errors_total{kind="unavailable"} 0.0' in scraped.text
        # Only on the metrics address: the service's own port has no /metrics.
        assert requests.get(f"{server.base}/metrics", timeout=5).status_code == 404
    assert server.returncode == 0, server.output
    assert "POST /api/movies/ 200" in server.output


def test_server_refuses_to_start_with_bad_settings():
    environ = environ_for_tests(INVENTORY_PORT="not-a-port")
    result = subprocess.run([sys.executable, "server.py"], cwd=SERVICE_DIR, env=environ, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "INVENTORY_PORT='not-a-port'" in result.stdout + result.stderr
    assert environ["INVENTORY_DB_PASSWORD"] not in result.stdout + result.stderr


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
        answer = raw_exchange(server.port, request, half_close=True)
    assert answer.status == 400, answer
    assert "shorter than its Content-Length (17 of 37 bytes)" in answer.json()["message"]
    assert movie_count(admin_engine) == 0


@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{\"title\r\n0\r\n\r\n", b"3\r\n{}}XX"])
def test_a_malformed_chunked_body_is_400_without_a_traceback(admin_engine, empty_movies, chunks):
    request = (b"POST /api/movies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    with serving() as server:
        answer = raw_exchange(server.port, request, half_close=True)
    assert answer.status == 400, answer
    assert answer.json()["error"] == "bad_request" and "chunked" in answer.json()["message"]
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
        # The failure in mid-stream is counted like any other the database causes.
        scraped = requests.get(f"http://127.0.0.1:{server.environ['INVENTORY_METRICS_PORT']}/metrics", timeout=5)
        failures = float(re.search(r'^inventory_database_errors_total\{kind="unavailable"\} (\S+)$', scraped.text,
                                   re.M).group(1))
        assert failures == 1  # the batch cut off (/health reports the database down in its own answer)
    assert "list of movies cut off after id" in server.output, server.output
    assert "Traceback" not in server.output
