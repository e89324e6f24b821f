"""Helpers of the gateway's suite: its settings on the test vhost, and the real inventory as a subprocess of its
own venv (on the inventory's test database, never movies_db)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from crud_common import testing
from crud_common.settings import load
from crud_common.testing import Served, free_port, http_status, wait_for

from app.config import Config

SERVICE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SERVICE_DIR.parents[1]
INVENTORY_DIR = REPO_ROOT / "srcs" / "inventory-app"
INVENTORY_PYTHON = INVENTORY_DIR / ".venv" / "bin" / "python"


def environ_for_tests(**overrides: str) -> dict[str, str]:
    """The platform's settings with the gateway on the test vhost and free ports (ports 3000/8080/9101 of a running
    platform are never used; nothing listens at its INVENTORY_URL unless a test says so), plus `overrides`."""
    environ = testing.environ_for_tests()
    return {
        **environ, "RABBITMQ_VHOST": environ["RABBITMQ_TEST_VHOST"], "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()), "GATEWAY_METRICS_PORT": str(free_port()), "INVENTORY_URL": f"http://127.0.0.1:{free_port()}",
        "GATEWAY_RUNTIME_DIR": "/run/crud-master-tests", **overrides,
    }


def config_for_tests(**overrides: str) -> Config:
    return load(Config, environ_for_tests(**overrides))


def inventory_environ(port: int) -> dict[str, str]:
    environ = testing.environ_for_tests()
    return {**environ, "INVENTORY_DB_NAME": environ["INVENTORY_TEST_DB_NAME"], "INVENTORY_HOST": "127.0.0.1",
            "INVENTORY_PORT": str(port), "INVENTORY_METRICS_PORT": str(free_port()), "INVENTORY_WORKERS": "1", "INVENTORY_THREADS": "8"}


def migrate_inventory_test_database() -> None:
    result = subprocess.run(
        [str(INVENTORY_DIR / ".venv" / "bin" / "alembic"), "upgrade", "head"],
        cwd=INVENTORY_DIR, env=inventory_environ(free_port()), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"the inventory's migrations failed:\n{result.stdout}{result.stderr}"


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class GatewayProcesses:
    """The gateway as PM2 runs it: its application (server.py, gunicorn on a unix socket) and its front (front.py,
    nginx on GATEWAY_PORT), each its own process; `output` holds both logs once they stopped."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.config = load(Config, environ)
        self.port = self.config.gateway.port
        self.base = f"http://127.0.0.1:{self.port}"
        self.application = Served(SERVICE_DIR, sys.executable, environ, self.port,
                                  ready=self.config.gateway.app_socket.exists)
        # Behind the balancer the front answers only connections that open with the PROXY protocol header.
        listening = (lambda: accepts_connections(self.port)) if self.config.gateway.behind_proxy_protocol else None
        self.front = Served(SERVICE_DIR, sys.executable, environ, self.port, "/openapi.yaml", script="front.py",
                            ready=listening)
        self.output = ""

    def __enter__(self) -> GatewayProcesses:
        self.config.gateway.app_socket.unlink(missing_ok=True)
        self.application.start()
        try:
            self.front.start()
        except BaseException:
            self.application.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.front.stop()
        self.application.stop()
        self.output = self.front.output + self.application.output
        self.returncodes = (self.front.returncode, self.application.returncode)


class InventoryProcess(Served):
    """The real inventory (its own server.py, its own venv) on a test port; can be stopped and started again."""

    def __init__(self, port: int | None = None) -> None:
        port = port or free_port()
        super().__init__(INVENTORY_DIR, INVENTORY_PYTHON, inventory_environ(port), port)
        self.url = self.base

    def start(self) -> InventoryProcess:
        super().start()
        wait_for("the inventory to be healthy", lambda: http_status(f"{self.url}/health") == 200)
        return self
