"""server.py for real: gunicorn serves the app over HTTP, refuses bad settings, and stops cleanly on SIGTERM."""

from __future__ import annotations

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
