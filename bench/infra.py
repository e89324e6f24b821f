"""What the bench drives: its platform instance (PM2, PostgreSQL, RabbitMQ), child processes and wrk.

Every address and name comes from the environment that scripts/bench.sh exports (bench/bench.env first, then the
credentials of .env), so nothing here can point at a `make up` platform.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pika
import psycopg2

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

DATASET_ROWS = 1_000_000
DATASET_MARKER = f"crud-master bench dataset v1, {DATASET_ROWS} rows"


class BenchError(RuntimeError):
    """A scenario got a wrong answer (status, count) or the instance misbehaved: the run fails loudly."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


@dataclass(frozen=True)
class Settings:
    pm2_home: str
    gateway: str
    inventory: str
    nginx_port: int
    minimal_port: int
    env: dict[str, str]

    @classmethod
    def from_env(cls) -> Settings:
        env = dict(os.environ)
        # The guard the whole bench rests on: never the default platform's daemon, ports, databases or vhost.
        forbidden = {
            "PM2_HOME": {"", str(Path.home() / ".pm2")},
            "INVENTORY_DB_NAME": {"movies_db"},
            "BILLING_DB_NAME": {"orders_db"},
            "RABBITMQ_VHOST": {"crud_master"},
            "GATEWAY_PORT": {"3000"},
            "INVENTORY_PORT": {"8080"},
        }
        for name, bad in forbidden.items():
            check(env.get(name, "") not in bad, f"{name}={env.get(name, '')!r} is the default platform's; run via make bench")
        return cls(
            pm2_home=env["PM2_HOME"],
            gateway=f"http://127.0.0.1:{env['GATEWAY_PORT']}",
            inventory=f"http://127.0.0.1:{env['INVENTORY_PORT']}",
            nginx_port=int(env["BENCH_NGINX_PORT"]),
            minimal_port=int(env["BENCH_MINIMAL_PORT"]),
            env=env,
        )

    @property
    def queue(self) -> str:
        return self.env["RABBITMQ_QUEUE"]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> float:
    """Poll until predicate() holds; return the time it took. Never a blind sleep."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:  # not up yet (connection refused, ...): keep polling until the deadline
            pass
        if time.monotonic() - start > timeout_s:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- PM2 -----------------------------------------------------------------------------------------------

def pm2(settings: Settings, *args: str) -> str:
    result = subprocess.run(["pm2", *args], env=settings.env, cwd=ROOT, capture_output=True, text=True, check=False)
    check(result.returncode == 0, f"pm2 {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def pm2_status(settings: Settings, app: str) -> str:
    for entry in json.loads(pm2(settings, "jlist")):
        if entry["name"] == app:
            return entry["pm2_env"]["status"]
    return "missing"


def process_tree(pid: int) -> list[int]:
    """The process and every descendant (the front's nginx master and workers are grandchildren of PM2's app)."""
    tree, frontier = [pid], [pid]
    while frontier:
        children = subprocess.run(["pgrep", "-P", ",".join(map(str, frontier))], capture_output=True,
                                  text=True).stdout.split()
        frontier = [int(child) for child in children]
        tree += frontier
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (those gone are left out)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def pm2_pid(settings: Settings, app: str) -> int:
    return next((e["pid"] for e in json.loads(pm2(settings, "jlist")) if e["name"] == app), 0)


def pm2_pids(settings: Settings, app: str) -> list[int]:
    """The app's process and its children (gunicorn workers), for the profiler."""
    pid = next((e["pid"] for e in json.loads(pm2(settings, "jlist")) if e["name"] == app), 0)
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *map(int, children)]


# --- PostgreSQL ----------------------------------------------------------------------------------------

def connect_db(settings: Settings, service: str):
    """psycopg2 connection to the bench database of `service` ("INVENTORY" or "BILLING"), autocommit."""
    env = settings.env
    connection = psycopg2.connect(
        host=env[f"{service}_DB_HOST"], port=env[f"{service}_DB_PORT"], dbname=env[f"{service}_DB_NAME"],
        user=env[f"{service}_DB_USER"], password=env[f"{service}_DB_PASSWORD"], application_name="bench",
    )
    connection.autocommit = True
    return connection


def scalar(connection, sql: str, params: tuple | dict = ()) -> object:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def ensure_movies_dataset(settings: Settings) -> float:
    """Load the 1,000,000-movie data set unless the bench database already holds it; return seconds spent."""
    connection = connect_db(settings, "INVENTORY")
    try:
        marker = scalar(connection, "SELECT obj_description('movies'::regclass, 'pg_class')")
        has_index = scalar(connection, "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_movies_title_trgm'")
        rows = scalar(connection, "SELECT count(*) FROM movies")
        if marker == DATASET_MARKER and has_index == 1 and rows == DATASET_ROWS:
            log.info("movies_bench: the %d-movie data set is already loaded", DATASET_ROWS)
            return 0.0
        log.info("loading %d movies into %s (once; kept for later runs)", DATASET_ROWS, settings.env["INVENTORY_DB_NAME"])
        start = time.monotonic()
        connection.autocommit = False
        with connection, connection.cursor() as cursor:
            cursor.execute((BENCH_DIR / "sql" / "movies_dataset.sql").read_text(),
                           {"rows": DATASET_ROWS, "marker": DATASET_MARKER})
        check(scalar(connection, "SELECT count(*) FROM movies") == DATASET_ROWS, "the data set did not load")
        return time.monotonic() - start
    finally:
        connection.close()


# --- RabbitMQ ------------------------------------------------------------------------------------------

def rabbit_parameters(settings: Settings) -> pika.ConnectionParameters:
    env = settings.env
    return pika.ConnectionParameters(
        host=env["RABBITMQ_HOST"], port=int(env["RABBITMQ_PORT"]), virtual_host=env["RABBITMQ_VHOST"],
        credentials=pika.PlainCredentials(env["RABBITMQ_USER"], env["RABBITMQ_PASSWORD"]),
        heartbeat=60,
    )


def queue_depth(settings: Settings, queue: str | None = None) -> int:
    connection = pika.BlockingConnection(rabbit_parameters(settings))
    try:
        # Passive: the bench never declares the queue, so its arguments can never disagree with the services'.
        return connection.channel().queue_declare(queue or settings.queue, passive=True).method.message_count
    finally:
        connection.close()


def purge_queue(settings: Settings) -> None:
    connection = pika.BlockingConnection(rabbit_parameters(settings))
    try:
        connection.channel().queue_purge(settings.queue)
    finally:
        connection.close()


def order_properties(message_id: str) -> pika.BasicProperties:
    """The properties the gateway gives every order (srcs/api-gateway/app/publisher.py), so the consumer treats both alike."""
    return pika.BasicProperties(
        delivery_mode=2, content_type="application/json", message_id=message_id,
        correlation_id=uuid.uuid4().hex, timestamp=int(time.time()),
    )


def order_body(i: int) -> bytes:
    return json.dumps({"user_id": i % 1000, "number_of_items": 1 + i % 5, "total_amount": f"{i % 500}.{i % 100:02d}"}).encode()


# --- Child processes (nginx, the minimal app, the baseline consumer) ------------------------------------

@contextmanager
def child(cmd: list[str], name: str, log_dir: Path, env: dict[str, str] | None = None,
          ready: Callable[[], bool] | None = None, cwd: Path = ROOT) -> Iterator[subprocess.Popen]:
    """Run cmd as a foreground child in its own process group; stop it (and its workers) on the way out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    try:
        if ready is not None:
            wait_until(lambda: process.poll() is None and ready(), 30, f"{name} to start (see {log_dir / name}.log)")
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
