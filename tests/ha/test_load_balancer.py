"""PM2's load_balancer app (scripts/load-balancer.sh) for real, in front of stand-in gateway instances whose failures
are chosen: HAProxy's own answers are 503s that a client may send again, in the JSON shape, announcing that the
connection closes; a gateway's own answer is passed on; a GET that failed on one instance is answered by the other."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from crud_common.testing import wait_for
from tests.system.conftest import REPO_ROOT

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# What a stand-in instance does with a request: answer these bytes, or None to reset the connection under it.
Behaviour = Callable[[bytes], bytes | None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer(status: str, body: dict, **headers: str) -> bytes:
    payload = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", f"Content-Length: {len(payload)}",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def answers_everything(request: bytes) -> bytes:
    return answer("200 OK", {"served": True})


def resets_all_but_health_checks(request: bytes) -> bytes | None:
    return answer("200 OK", {}) if request.startswith(b"HEAD /openapi.yaml") else None


class StandInGateway(socketserver.ThreadingTCPServer):
    """A gateway instance as HAProxy sees it: the PROXY protocol header first (v2, as its health checks send it
    too), then one HTTP request per connection (HAProxy's http-server-close), answered as `behaviour` says."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        super().__init__(("127.0.0.1", port), StandInHandler)


class StandInHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        connection: socket.socket = self.request
        data = b""
        while len(data) < 16 or b"\r\n\r\n" not in data[16 + struct.unpack("!H", data[14:16])[0]:]:
            chunk = connection.recv(65536)
            if not chunk:
                return
            data += chunk
        assert data.startswith(PROXY_V2_SIGNATURE)
        request = data[16 + struct.unpack("!H", data[14:16])[0]:]
        reply = self.server.behaviour(request)
        if reply is None:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            connection.sendall(reply)
        connection.close()


def _consecutive_stand_ins(behaviours: tuple[Behaviour, ...]) -> list[StandInGateway]:
    """Stand-ins on consecutive ports (the balancer's instances are GATEWAY_PORT + n): a port found free may be
    taken before it is bound (the platform under test opens connections meanwhile), so a range is tried again."""
    for _ in range(20):
        first, servers = free_port(), []
        try:
            for n, behaviour in enumerate(behaviours):
                servers.append(StandInGateway(first + n, behaviour))
            return servers
        except OSError:
            for server in servers:
                server.server_close()
    raise RuntimeError("no consecutive free ports for the stand-in gateways")


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """start(behaviour, ...): stand-in gateways behaving so, one per behaviour, behind the load balancer; returns
    its URL once it listens."""
    started: list = []

    def start(*behaviours: Behaviour) -> str:
        public = free_port()
        servers = _consecutive_stand_ins(behaviours)
        first = servers[0].server_address[1]
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            started.append(server)
        environment = {**os.environ, "GATEWAY_RUNTIME_DIR": str(tmp_path), "LB_GATEWAY_HOST": "127.0.0.1",
                       "LB_GATEWAY_PORT": str(public), "LB_INVENTORY_HOST": "127.0.0.1",
                       "LB_INVENTORY_PORT": str(free_port()), "GATEWAY_PORT": str(first),
                       "INVENTORY_PORT": str(free_port()), "HA_INSTANCES": str(len(behaviours)),
                       "GATEWAY_CLIENT_HEADER_TIMEOUT_S": "10"}
        haproxy = subprocess.Popen(["bash", str(REPO_ROOT / "scripts/load-balancer.sh")], env=environment,
                                   stdout=(tmp_path / "haproxy.log").open("w"), stderr=subprocess.STDOUT)
        started.append(haproxy)
        wait_for("HAProxy to listen", lambda: _in_use(public), timeout_s=30)
        return f"http://127.0.0.1:{public}"

    yield start
    for thing in started:
        if isinstance(thing, subprocess.Popen):
            thing.terminate()
            thing.wait(timeout=10)
        else:
            thing.shutdown()
            thing.server_close()


def _in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_gateway_failing_while_answering_an_order_is_a_503_to_send_again(balancer):
    url = balancer(resets_all_but_health_checks)
    session = requests.Session()
    for _ in range(3):
        # The same client's next order is answered too: HAProxy closes the connection after its own answer, and
        # says so, so the client opens another instead of sending on a closed one (it would get no answer at all).
        response = session.post(f"{url}/api/billing/", json={"user_id": 1}, headers={"X-Request-ID": "order-1"},
                                timeout=10)
        assert response.status_code == 503
        assert response.json() == {"error": "service_unavailable", "request_id": "order-1", "message":
                                   "a gateway failed while answering: send the request again "
                                   "(an order with the same Idempotency-Key)"}
        assert response.headers["X-Request-ID"] == "order-1"
        assert response.headers["Connection"] == "close"
        assert "X-Balancer-Error" not in response.headers


def test_a_gateways_own_502_is_passed_on_as_it_is(balancer):
    own = answer("502 Bad Gateway", {"error": "bad_gateway", "message": "the inventory service is unreachable",
                                     "request_id": "abc"}, X_Request_ID="abc")
    url = balancer(lambda request: own if not request.startswith(b"HEAD") else answer("200 OK", {}))
    response = requests.get(f"{url}/api/movies", timeout=10)
    assert response.status_code == 502
    assert response.json()["message"] == "the inventory service is unreachable"
    assert response.headers["X-Request-ID"] == "abc"


def test_a_get_that_failed_on_one_gateway_is_answered_by_the_other_and_an_order_is_not_sent_twice(balancer):
    url = balancer(resets_all_but_health_checks, answers_everything)
    # Round robin: each request goes to each instance in turn, and what failed on the first is retried on the
    # second only when it may be done twice.
    gets = [requests.get(f"{url}/api/movies", timeout=10).status_code for _ in range(6)]
    assert gets == [200] * 6
    orders = [requests.post(f"{url}/api/billing/", json={}, timeout=10).status_code for _ in range(6)]
    assert sorted(orders) == [200] * 3 + [503] * 3


def test_an_order_on_a_kept_alive_connection_whose_gateway_fails_is_a_503_too(balancer):
    # Round robin again, one client: whichever instance its first order goes to, one of its orders goes to the
    # failing instance on the kept-alive connection a 200 came back on. HAProxy closes such a connection without
    # any answer when a request that is not its first fails (a client may send that again, as it would to the
    # instance itself), which would tell a client of an order nothing at all.
    url = balancer(answers_everything, resets_all_but_health_checks)
    session = requests.Session()
    statuses = [session.post(f"{url}/api/billing/", json={}, timeout=10).status_code for _ in range(4)]
    assert sorted(statuses) == [200] * 2 + [503] * 2
