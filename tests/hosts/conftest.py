"""The three-host test: `make test-hosts` (scripts/test-hosts.sh) builds the namespaces and runs these tests.

Every request is made from inside a namespace with curl (`ip netns exec cm-<role> ...`), the way a
client on that VM would make it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {**dotenv_values(REPO_ROOT / ".env"), **os.environ}
HOSTS_DIR = "/tmp/crud-master-hosts"  # scripts/lib/hosts.sh


def ip_of(role: str) -> str:
    return {"gateway": SETTINGS["GATEWAY_VM_IP"], "inventory": SETTINGS["INVENTORY_VM_IP"],
            "billing": SETTINGS["BILLING_VM_IP"], "outside": SETTINGS["HOST_ONLY_HOST_IP"]}[role]


@dataclass(frozen=True)
class Answer:
    status: int
    body: str

    def json(self) -> object:
        return json.loads(self.body)


class Host:
    """One of the namespaces standing for a VM (or for the host machine, 'outside')."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.env = {**os.environ, "PM2_HOME": f"{HOSTS_DIR}/{role}/pm2", "PGHOST": f"{HOSTS_DIR}/{role}/pg",
                    "RABBITMQ_NODENAME": "rabbit@localhost"}

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", f"cm-{self.role}", *command], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def http(self, method: str, url: str, body: dict | None = None, headers: dict | None = None) -> Answer:
        command = ["curl", "-sS", "-m", "15", "-X", method, "-w", "\n%{http_code}", url]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        if body is not None:
            command += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        result = self.run(*command)
        assert result.returncode == 0, f"{method} {url} from {self.role}: {result.stderr}"
        text, _, status = result.stdout.rpartition("\n")
        return Answer(int(status), text)

    def can_connect(self, ip: str, port: int | str) -> bool:
        """A TCP handshake within 2 s (a dropped SYN, as the firewalls do, times out)."""
        return self.run("timeout", "2", "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}").returncode == 0

    def sql(self, database: str, query: str) -> str:
        result = self.run("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", database, "-c", query)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def pm2(self, *args: str) -> None:
        result = self.run("pm2", *args)
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def hosts() -> dict[str, Host]:
    return {role: Host(role) for role in ("gateway", "inventory", "billing", "outside")}
