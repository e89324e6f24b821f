"""server.py for real: gunicorn serves the gateway over HTTP in front of the real inventory, refuses bad
settings, and stops cleanly on SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys

import requests

from .support import SERVICE_DIR, gateway_environment, wait_for_health


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
        for request, status, code in UNPARSABLE_REQUESTS:
            answer = raw_exchange(int(env["GATEWAY_PORT"]), request)
            assert answer[:2] == (status, "application/json"), (request[:40], answer)
            assert answer[2]["error"] == code and answer[2]["message"] and answer[2]["request_id"]
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
