"""Helpers shared by the tests: test settings from the root .env, free ports, and the real inventory as a
subprocess of its own venv (on the inventory's test database, never movies_db)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests
from dotenv import load_dotenv

SERVICE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SERVICE_DIR.parents[1]
INVENTORY_DIR = REPO_ROOT / "srcs" / "inventory-app"
INVENTORY_PYTHON = INVENTORY_DIR / ".venv" / "bin" / "python"

load_dotenv(REPO_ROOT / ".env", override=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_environment(**overrides: str) -> dict[str, str]:
    """The gateway's environment on the test vhost; ports 3000/8080 of a running platform are never used."""
    env = dict(os.environ)
    env["RABBITMQ_VHOST"] = env["RABBITMQ_TEST_VHOST"]
    env["GATEWAY_HOST"] = "127.0.0.1"
    env["GATEWAY_PORT"] = str(free_port())
    env["INVENTORY_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there unless a test says so
    env.update(overrides)
    return env


gateway_environment.__test__ = False


def inventory_environment(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        INVENTORY_DB_NAME=env["INVENTORY_TEST_DB_NAME"],
        INVENTORY_HOST="127.0.0.1",
        INVENTORY_PORT=str(port),
        INVENTORY_WORKERS="1",
        INVENTORY_THREADS="8",
    )
    return env


def migrate_inventory_test_database() -> None:
    result = subprocess.run(
        [str(INVENTORY_DIR / ".venv" / "bin" / "alembic"), "upgrade", "head"],
        cwd=INVENTORY_DIR, env=inventory_environment(free_port()), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"the inventory's migrations failed:\n{result.stdout}{result.stderr}"


def wait_for(url: str, deadline_s: float = 20) -> requests.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_for_health(url: str, deadline_s: float = 30) -> requests.Response:
    """The first 200 from a health URL, or the last answer once the deadline passed (a dependency that is
    still starting answers 503 for a moment)."""
    deadline = time.monotonic() + deadline_s
    while (response := wait_for(url, deadline_s)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return response


class InventoryProcess:
    """The real inventory (its own server.py, its own venv) on a test port; can be stopped and started again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> InventoryProcess:
        self.process = subprocess.Popen(
            [str(INVENTORY_PYTHON), "server.py"], cwd=INVENTORY_DIR, env=inventory_environment(self.port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            response = wait_for_health(f"{self.url}/health")
            assert response.status_code == 200, response.text
        except BaseException:
            self.stop()  # never leave a server behind
            raise
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
