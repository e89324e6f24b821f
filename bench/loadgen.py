"""Load generators: wrk (HTTP), confirmed pika publishers (AMQP baseline) and a paced HTTP sender (end to end)."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import selectors
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pika
from crud_common.testing import NotConfirmed, publish_confirmed

from infra import BENCH_DIR, BenchError, Settings, check, order_body, order_properties, rabbit_parameters

WRK_SCRIPT = BENCH_DIR / "wrk" / "bench.lua"


@dataclass(frozen=True)
class Load:
    """One load run: completed requests, their rate and latency percentiles (milliseconds)."""

    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int = 0


def wrk(url: str, *script_args: str, connections: int, duration_s: int, threads: int = 1) -> Load:
    """Run wrk against url; any error (connection, timeout, status >= 400) fails the scenario."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s",
           "-s", str(WRK_SCRIPT), url, "--", *script_args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30, check=False)
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    check(result.returncode == 0 and line is not None, f"wrk failed: {result.stdout[-400:]} {result.stderr[-400:]}")
    report = json.loads(line.removeprefix("WRK_JSON "))
    errors = report["errors"]
    check(errors["total"] == 0, f"wrk {url} {' '.join(script_args[:2])}: errors {errors} of {report['requests']} requests")
    check(report["requests"] > 0, f"wrk {url}: no request completed")
    return Load(
        requests=report["requests"],
        rate=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=report["latency_us"]["p50"] / 1000,
        p99_ms=report["latency_us"]["p99"] / 1000,
    )


# --- Raw pika: confirmed publishing, one message at a time per connection --------------------------------

def _pika_publisher(settings: Settings, prefix: str, worker: int, duration_s: float, out) -> None:
    connection = pika.BlockingConnection(rabbit_parameters(settings))
    channel = connection.channel()
    channel.confirm_delivery()  # basic_publish now returns only when the broker confirmed the message
    latencies: list[float] = []
    sent = 0
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        started = time.perf_counter()
        channel.basic_publish("", settings.queue, order_body(sent),
                              order_properties(f"{prefix}-{worker}-{sent}"), mandatory=True)
        latencies.append(time.perf_counter() - started)
        sent += 1
    connection.close()
    out.put((sent, latencies))


def pika_confirmed(settings: Settings, prefix: str, connections: int, duration_s: float) -> Load:
    """`connections` processes (not threads: no GIL between them), each publishing with a confirm per message."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_pika_publisher, args=(settings, prefix, w, duration_s, out))
               for w in range(connections)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    results = [out.get(timeout=duration_s + 60) for _ in workers]
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join()
        check(worker.exitcode == 0, f"a pika publisher exited with {worker.exitcode}")
    latencies = sorted(l for _, ls in results for l in ls)
    total = sum(sent for sent, _ in results)
    return Load(total, total / elapsed, _pct(latencies, 50) * 1000, _pct(latencies, 99) * 1000)


def publish_backlog(settings: Settings, prefix: str, count: int, timeout_s: float = 120.0) -> float:
    """Put `count` orders in the queue as fast as one connection can, every one confirmed by the broker: without
    confirms the broker promises nothing about a publish, and a drain that waits for orders that never were
    fails later with a misleading message. The seconds it took."""
    messages = [(order_body(i), order_properties(f"{prefix}-{i}")) for i in range(count)]
    started = time.monotonic()
    try:
        publish_confirmed(rabbit_parameters(settings), settings.queue, messages, timeout_s)
    except NotConfirmed as exc:
        raise BenchError(f"publishing the {count}-order backlog: {exc}") from None
    return time.monotonic() - started


def _pct(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * percent / 100))]


# --- Paced HTTP sender: POST /api/billing at a fixed rate, recording when each 200 arrived ---------------

def paced_billing(settings: Settings, prefix: str, user_base: int, rate: float, duration_s: float,
                  senders: int = 8) -> dict[int, float]:
    """Open-loop POSTs at `rate`/s over `senders` keep-alive connections; order n has user_id user_base + n.

    Returns {user_id: time the 200 arrived (epoch seconds)}; the user id finds the row whatever message id it got.
    """
    host, port = settings.gateway.removeprefix("http://").split(":")
    total = int(rate * duration_s)
    start = time.time() + 0.2
    arrived: dict[int, float] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def sender(k: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        for n in range(k, total, senders):
            delay = start + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            user_id = user_base + n
            body = json.dumps({"user_id": user_id, "number_of_items": 1 + n % 5, "total_amount": f"{n % 90}.50"})
            connection.request("POST", "/api/billing", body=body, headers={
                "Content-Type": "application/json", "Idempotency-Key": f"{prefix}-{n}"})
            response = connection.getresponse()
            response.read()
            now = time.time()
            with lock:
                if response.status == 200:
                    arrived[user_id] = now
                else:
                    failures.append(f"user {user_id}: {response.status}")
        connection.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(not failures, f"end to end: {len(failures)} POSTs did not get 200, e.g. {failures[:3]}")
    check(len(arrived) == total, f"end to end: {len(arrived)} answers for {total} POSTs")
    achieved = total / (max(arrived.values()) - start)
    if achieved < rate * 0.9:
        raise BenchError(f"end to end: the sender reached only {achieved:.0f}/s of {rate:.0f}/s")
    return arrived


# --- Slow clients: connections that start a request and then crawl -----------------------------------------

@dataclass
class SlowConnection:
    kind: str
    sock: socket.socket
    opened: float
    last_sent: float
    closed_after_s: float | None = None  # from its last byte to the server closing it


class SlowClients:
    """Connections that started a request and crawl: `one_byte` sent one byte and then nothing, `headers` send one
    more header byte every `every_s` and never end their header, `bodies` sent a whole header announcing a body and
    send one byte of it every `every_s` for `body_for_s`, then stop. Each group comes from its own loopback
    addresses (127.0.N.x), at most `per_address` connections each, as many clients would. `watch` then records
    when the server closed each one."""

    GROUPS = {"one_byte": 1, "headers": 2, "bodies": 3}

    def __init__(self, port: int, counts: dict[str, int], *, every_s: float, body_for_s: float,
                 per_address: int = 50) -> None:
        self.port, self.every_s, self.body_for_s = port, every_s, body_for_s
        self.connections: list[SlowConnection] = []
        for kind, count in counts.items():
            for n in range(count):
                address = f"127.0.{self.GROUPS[kind]}.{1 + n // per_address}"
                sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))
                first = b"G" if kind == "one_byte" else (
                    b"GET /api/movies HTTP/1.1\r\nHost: bench\r\nX-Slow: " if kind == "headers" else
                    b"POST /api/movies HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 60000\r\n\r\n{")
                sock.sendall(first)
                now = time.monotonic()
                self.connections.append(SlowConnection(kind, sock, now, now))
        self._stop = threading.Event()
        self._trickler = threading.Thread(target=self._trickle, daemon=True)
        self._trickler.start()

    def _trickle(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every_s):
            for connection in self.connections:
                if connection.kind == "one_byte" or connection.closed_after_s is not None:
                    continue
                if connection.kind == "bodies" and time.monotonic() - started > self.body_for_s:
                    continue
                try:
                    connection.sock.send(b"a")
                    connection.last_sent = time.monotonic()
                except OSError:
                    pass  # closed by the server: `watch` records when

    def watch(self, timeout_s: float) -> None:
        """Until every connection was closed by the server (EOF or reset), or timeout_s."""
        selector = selectors.DefaultSelector()
        for connection in self.connections:
            connection.sock.setblocking(False)
            selector.register(connection.sock, selectors.EVENT_READ, connection)
        deadline = time.monotonic() + timeout_s
        open_left = len(self.connections)
        while open_left and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                connection = key.data
                try:
                    data = connection.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # the server's answer (a 408) came first, then EOF
                    if connection.kind == "bodies":
                        connection.closed_after_s = time.monotonic() - connection.last_sent
                    else:  # the header timeout runs from the connection's first byte
                        connection.closed_after_s = time.monotonic() - connection.opened
                    selector.unregister(connection.sock)
                    open_left -= 1
        self._stop.set()
        self._trickler.join()
        selector.close()

    def close(self) -> None:
        self._stop.set()
        for connection in self.connections:
            connection.sock.close()

    def closed(self, kind: str) -> list[float]:
        return [c.closed_after_s for c in self.connections if c.kind == kind and c.closed_after_s is not None]

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.connections)
