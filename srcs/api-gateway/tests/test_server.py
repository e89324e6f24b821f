"""server.py for real: gunicorn serves the gateway over HTTP in front of the real inventory, refuses bad
settings, and stops cleanly on SIGTERM."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys

import requests

from .support import SERVICE_DIR, gateway_environment, wait_for_health


def test_server_serves_over_http_and_exits_0_on_sigterm(inventory, amqp, clean_movies):
    env = gateway_environment(INVENTORY_URL=inventory.url, GATEWAY_WORKERS="1", GATEWAY_THREADS="4")
    base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    process = subprocess.Popen([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_health(f"{base}/health").status_code == 200
        created = requests.post(f"{base}/api/movies/", json={"title": "A new movie"}, timeout=5)
        assert created.status_code == 201
        assert created.headers["Location"] == f"/api/movies/{created.json()['id']}"
        # One Server and one Date header (gunicorn's), whatever the inventory sent.
        connection = http.client.HTTPConnection("127.0.0.1", int(env["GATEWAY_PORT"]), timeout=5)
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
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "POST /api/billing/ 200 " in output and "upstream=rabbitmq" in output
    assert "POST /api/movies/ 201 " in output and "upstream=inventory" in output


def test_server_refuses_to_start_with_bad_settings():
    # An empty variable counts as set for python-dotenv, so .env cannot fill it in.
    env = gateway_environment(GATEWAY_PORT="not-a-port", INVENTORY_URL="ftp://x", RABBITMQ_HOST="")
    result = subprocess.run([sys.executable, "server.py"], cwd=SERVICE_DIR, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "GATEWAY_PORT='not-a-port'" in output and "INVENTORY_URL='ftp://x'" in output
    assert "RABBITMQ_HOST is not set" in output
    assert env["RABBITMQ_PASSWORD"] not in output
