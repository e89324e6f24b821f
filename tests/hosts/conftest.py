"""The three-host test: `make test-hosts` (scripts/test-hosts.sh) builds the namespaces and runs these tests.

Every request is made from inside a namespace with curl (`ip netns exec cm-<role> ...`), the way a
client on that VM would make it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {**dotenv_values(REPO_ROOT / ".env"), **os.environ}
# The topology scripts/test-hosts.sh built: three-vm, or ha (billing-vm-2 and billing-vm-3 too).
TOPOLOGY = os.environ.get("CRUD_MASTER_TOPOLOGY", "three-vm")
BILLING_NODES = ["billing", "billing-2", "billing-3"] if TOPOLOGY == "ha" else ["billing"]


def ip_of(host: str) -> str:
    return {"gateway": SETTINGS["GATEWAY_VM_IP"], "inventory": SETTINGS["INVENTORY_VM_IP"],
            "billing": SETTINGS["BILLING_VM_IP"], "billing-2": SETTINGS["BILLING_VM_2_IP"],
            "billing-3": SETTINGS["BILLING_VM_3_IP"], "outside": SETTINGS["HOST_ONLY_HOST_IP"]}[host]


# A command on a host, run as the scripts run it there (scripts/lib/hosts.sh: in_host): in its namespace, under
# its VM's host name where it has one (RabbitMQ's CLI names itself so), with its services' environment (its PM2
# daemon, PostgreSQL socket, RabbitMQ node, address), from .env and the topology as test-hosts.sh has them.
IN_HOST = ('source scripts/lib/common.sh && source scripts/lib/vm.sh && source scripts/lib/hosts.sh && load_env && '
           'in_host "$@"')


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

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # A session of its own: bash runs in_host as a function, not by exec, so a command over its time is
        # stopped with everything it started, not only the bash around it.
        with subprocess.Popen(["bash", "-c", IN_HOST, "in_host", self.role, *command], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

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

    def listening(self, port: int | str) -> set[str]:
        """The addresses something listens on at this TCP port in the host's namespace."""
        lines = self.run("ss", "-ltnH", f"sport = :{port}").stdout.splitlines()
        return {line.split()[3].rsplit(":", 1)[0] for line in lines}


@pytest.fixture(scope="session")
def hosts() -> dict[str, Host]:
    return {role: Host(role) for role in ("gateway", "inventory", *BILLING_NODES, "outside")}
