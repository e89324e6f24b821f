"""A steady stream of orders and GETs through the load balancer while, one at a time, a consumer, an inventory
instance and a gateway instance are killed, the broker node leading billing_queue is killed, and two nodes of
three are stopped (a minority left), then brought back. Counts are exact: no order answered 200 is lost or stored
twice, and every refused order is a 503; durations are never asserted.

The clients are careful ones: each order carries its Idempotency-Key and a 503 is sent again with the same key
until it is taken, so every order is finally answered 200 and must then be stored exactly once.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.system.conftest import REPO_ROOT, Platform, env

log = logging.getLogger(__name__)
BROKER = REPO_ROOT / "scripts" / "broker.sh"
CLIENTS = 4
# A client's pause between two orders, and before sending a refused one again.
PACE_S = 0.01
RETRY_AFTER_S = 0.2


def broker(*args: str) -> str:
    """scripts/broker.sh, as an operator types it."""
    return subprocess.run(["bash", str(BROKER), *args], check=True, capture_output=True, text=True,
                          timeout=300).stdout.strip()


@dataclass
class Attempt:
    sent: float
    answered: float
    key: str
    status: int | str  # an HTTP status, or the name of the error that came instead of an answer


@dataclass
class OrderStream:
    """CLIENTS threads placing orders through the gateway, and one reading a movie, until stopped."""

    platform: Platform
    movie_url: str
    attempts: list[Attempt] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> message id of its 200
    user_ids: dict[str, int] = field(default_factory=dict)
    reads: Counter = field(default_factory=Counter)
    _running: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> OrderStream:
        self._running.set()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]
        self._threads.append(threading.Thread(target=self._reader, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._running.clear()
        for thread in self._threads:
            thread.join(timeout=120)

    def _client(self) -> None:
        session = requests.Session()
        while self._running.is_set():
            key, user_id = f"ha-{uuid.uuid4().hex}", random.randrange(10**15, 10**16)
            with self._lock:
                self.user_ids[key] = user_id
            self._place(session, key, {"user_id": user_id, "number_of_items": 1, "total_amount": "9.99"})
            time.sleep(PACE_S)

    def _place(self, session: requests.Session, key: str, order: dict) -> None:
        # Sent again while refused; after the stream stopped, for as long as it takes the broker to be back.
        deadline = None
        while True:
            sent = time.monotonic()
            try:
                response = session.post(f"{self.platform.gateway}/api/billing/", json=order,
                                        headers={"Idempotency-Key": key}, timeout=15)
                status: int | str = response.status_code
            except requests.RequestException as exc:
                # No answer at all (a connection closed under the order, a timeout): counted, and fails the test.
                status = type(exc).__name__
            with self._lock:
                self.attempts.append(Attempt(sent, time.monotonic(), key, status))
                if status == 200:
                    self.accepted[key] = response.json()["message_id"]
            if status != 503:
                return
            if not self._running.is_set():
                deadline = deadline or time.monotonic() + 90
                if time.monotonic() > deadline:
                    return
            time.sleep(RETRY_AFTER_S)

    def _reader(self) -> None:
        session = requests.Session()
        while self._running.is_set():
            try:
                status: int | str = session.get(self.movie_url, timeout=15).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with self._lock:
                self.reads[status] += 1
            time.sleep(PACE_S)

    def statuses(self, sent_since: float = 0.0, sent_until: float = float("inf")) -> Counter:
        with self._lock:
            return Counter(a.status for a in self.attempts if sent_since <= a.sent < sent_until)


def orders_db():
    return psycopg2.connect(host=env("BILLING_DB_HOST"), port=env("BILLING_DB_PORT"), dbname=env("BILLING_DB_NAME"),
                            user=env("BILLING_DB_USER"), password=env("BILLING_DB_PASSWORD"), connect_timeout=5)


def stored(stream: OrderStream) -> tuple[Counter, int]:
    """(rows per message id of the accepted orders, rows of any order of this stream's users)."""
    with orders_db() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT message_id, count(*) FROM orders WHERE message_id = ANY(%s) GROUP BY message_id",
                       (list(stream.accepted.values()),))
        per_id = Counter(dict(cursor.fetchall()))
        cursor.execute("SELECT count(*) FROM orders WHERE user_id = ANY(%s)", (list(stream.user_ids.values()),))
        return per_id, cursor.fetchone()[0]


def assert_every_order_stored_once(stream: OrderStream) -> None:
    placed = set(stream.user_ids)
    assert set(stream.accepted) == placed, f"{len(placed - set(stream.accepted))} orders never taken"
    deadline = time.monotonic() + 120
    while True:
        per_id, rows = stored(stream)
        if len(per_id) == len(stream.accepted) or time.monotonic() > deadline:
            break
        time.sleep(1)
    lost = set(stream.accepted.values()) - set(per_id)
    assert not lost, f"{len(lost)} orders answered 200 and not stored"
    # orders.message_id is unique, so a copy of an order could only be a row under another message id: each
    # stream user places one order, so its rows are counted by user.
    assert rows == len(stream.accepted), f"{rows - len(stream.accepted)} orders stored twice"


def assert_only_200_and_503(stream: OrderStream) -> None:
    statuses = stream.statuses()
    log.info("%d orders, %d attempts: %s; GETs: %s", len(stream.user_ids), sum(statuses.values()), dict(statuses),
             dict(stream.reads))
    assert set(statuses) <= {200, 503}, statuses
    assert set(stream.reads) == {200}, stream.reads


def leader() -> int:
    return int(broker("leader", env("RABBITMQ_VHOST")))


def online_replicas() -> set[str]:
    """The nodes whose replica of billing_queue is online (its members stay listed while a node is down)."""
    answer = subprocess.run(["rabbitmqctl", "-n", "crud-broker-1@localhost", "-q", "list_queues", "-p",
                             env("RABBITMQ_VHOST"), "name", "online", "--formatter", "json"],
                            check=True, capture_output=True, text=True, timeout=120).stdout
    return set(next(q["online"] for q in json.loads(answer) if q["name"] == env("RABBITMQ_QUEUE")))


def wait_for_new_leader(killed: int) -> int:
    deadline = time.monotonic() + 30
    while (now := leader()) == killed and time.monotonic() < deadline:
        time.sleep(0.5)
    return now


def instances(platform: Platform, app: str) -> dict[int, int]:
    """PID of each online instance of a PM2 app, by its instance number (NODE_APP_INSTANCE)."""
    return {entry["pm2_env"]["NODE_APP_INSTANCE"]: entry["pid"] for entry in json.loads(platform.pm2("jlist"))
            if entry["name"] == app and entry["pm2_env"]["status"] == "online"}


def consumer_pids(platform: Platform) -> list[int]:
    return list(instances(platform, "billing_app").values())


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a gunicorn master's workers, the front's nginx)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo += children.get(current, [])
    return tree


def kill_instance(platform: Platform, app: str, instance: int) -> int:
    """SIGKILL to instance `instance` of `app` and everything below it, as a crash of its machine would; its PID."""
    pid = instances(platform, app)[instance]
    subprocess.run(["kill", "-KILL", *map(str, process_tree(pid))], check=False)
    return pid


def wait_until_back(platform: Platform, app: str, killed: int) -> None:
    deadline = time.monotonic() + 60
    while (len(pids := instances(platform, app)) != 2 or killed in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(pids) == 2 and killed not in pids.values(), f"PM2 did not start {app} again: {pids}"


@pytest.fixture(scope="module")
def movie_url(platform: Platform) -> str:
    response = requests.post(f"{platform.gateway}/api/movies/", json={"title": "Chaos", "description": "A test"},
                             timeout=15)
    assert response.status_code == 200, response.text
    return f"{platform.gateway}/api/movies/{response.json()['id']}"


@pytest.fixture(autouse=True)
def whole_cluster():
    """Every test leaves the three nodes up and billing_queue replicated on each (test.sh starts them so)."""
    yield
    broker("up")
    deadline = time.monotonic() + 60
    while len(online_replicas()) < 3 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(online_replicas()) == 3


def test_two_consumers_compete_and_a_killed_one_loses_and_doubles_nothing(platform, movie_url):
    assert len(consumer_pids(platform)) == 2
    with OrderStream(platform, movie_url) as stream:
        time.sleep(3)
        # Under a steady stream a consumer always holds deliveries not yet acked (its batch, its prefetch).
        victim = random.choice(consumer_pids(platform))
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        time.sleep(3)
    assert_only_200_and_503(stream)
    assert_every_order_stored_once(stream)
    # PM2 started the killed consumer again: two compete once more.
    wait_until_back(platform, "billing_app", victim)


def test_an_inventory_instance_killed_fails_no_get(platform, movie_url):
    # HAProxy sends a GET whose instance died under it to the other one, and new ones only there.
    with OrderStream(platform, movie_url) as stream:
        time.sleep(2)
        killed = kill_instance(platform, "inventory_app", random.choice([0, 1]))
        time.sleep(5)
    assert_only_200_and_503(stream)  # every GET among them a 200
    assert_every_order_stored_once(stream)
    wait_until_back(platform, "inventory_app", killed)


def test_a_gateway_instance_killed_fails_no_get_and_refuses_orders_only_with_503(platform, movie_url):
    # Its front (nginx) and its application together; HAProxy sends what was in flight on it elsewhere when
    # that is safe (a GET), answers 503 when it is not (an order that may have been placed: sent again with its
    # key), and sends the rest to the other gateway until PM2 has this one back.
    instance = random.choice([0, 1])
    with OrderStream(platform, movie_url) as stream:
        time.sleep(2)
        killed_front = kill_instance(platform, "api_gateway_front", instance)
        killed_application = kill_instance(platform, "api_gateway", instance)
        time.sleep(5)
    assert_only_200_and_503(stream)
    assert_every_order_stored_once(stream)
    wait_until_back(platform, "api_gateway_front", killed_front)
    wait_until_back(platform, "api_gateway", killed_application)


def test_the_leader_killed_loses_nothing_and_refuses_only_with_503(platform, movie_url):
    with OrderStream(platform, movie_url) as stream:
        time.sleep(3)
        killed = leader()
        broker("kill", str(killed))
        down_since = time.monotonic()
        # One node of three down: the two others elect a new leader and go on.
        time.sleep(6)
        assert wait_for_new_leader(killed) != killed
        down_until = time.monotonic()
        broker("start", str(killed))
        time.sleep(2)
    assert_only_200_and_503(stream)
    # With one node of three down, at most 1% of the orders sent meanwhile refused (each gateway's publisher moves
    # off the killed node, and off a channel that refuses everything since: app/publisher.py, _Refused).
    while_down = stream.statuses(down_since, down_until)
    log.info("sent while the node was down: %s, %.1f%% refused", dict(while_down),
             100 * while_down[503] / max(1, sum(while_down.values())))
    assert sum(while_down.values()) > 0
    assert while_down[503] <= 0.01 * sum(while_down.values()), while_down
    assert_every_order_stored_once(stream)


def test_a_minority_refuses_every_order_with_503_and_loses_none(platform, movie_url):
    with OrderStream(platform, movie_url) as stream:
        time.sleep(2)
        leading = leader()
        stopped = [leading, next(node for node in (1, 2, 3) if node != leading)]
        for node in stopped:
            broker("stop", str(node))
        minority_since = time.monotonic()
        time.sleep(8)
        minority_until = time.monotonic()
        for node in stopped:
            broker("start", str(node))
        time.sleep(3)
    assert_only_200_and_503(stream)
    # One node of three cannot confirm anything: what was sent in that time was refused, then taken once the
    # majority was back (the clients sent it again).
    assert stream.statuses(minority_since, minority_until)[503] > 0
    # None taken from a minority: what was sent once it stood alone and answered before the majority was back
    # (a publish waits for its confirm at most GATEWAY_AMQP_TIMEOUT_S, 5 s) is never a 200.
    assert stream.statuses(minority_since, minority_until - 5.5)[200] == 0
    assert_every_order_stored_once(stream)
