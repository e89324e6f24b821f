"""The scenarios of issue 7. Each runs once per round, checks its answers, and returns its figures.

Figures are plain floats keyed by name; bench/report.py turns the rounds into medians, ranges and ratios.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from pathlib import Path

import requests

import loadgen
from infra import (
    DATASET_ROWS, ROOT, Settings, check, child, connect_db, cpu_seconds, pm2, pm2_pid, pm2_pids, pm2_status,
    port_open, process_tree, purge_queue, queue_depth, scalar, wait_until,
)

log = logging.getLogger("bench")

HTTP_SECONDS = 4
HTTP_SLICES = 4
HTTP_CONNECTIONS = 32
SEARCH_SECONDS = 3
INGEST_SECONDS = 4
INGEST_CONNECTIONS = 32
PIKA_CONNECTIONS = 4
E2E_SECONDS = 4
DRAIN_BACKLOG = 50_000
BASELINE_BACKLOG = 5_000
SCAN_REPEATS = 3
ORDER_JSON = json.dumps({"user_id": 42, "number_of_items": 3, "total_amount": "59.90"})

SEARCH_TERMS = {"rare": "axolotl", "common": "love"}
LAST_PAGE_LIMIT = 100
# The SQL the inventory runs for a list page (SQLAlchemy's statement for list_movies, parameters inlined).
LIST_SQL = ("SELECT movies.id, movies.title, movies.description FROM movies WHERE movies.id > %(after)s "
            "{title}ORDER BY movies.id LIMIT %(limit)s")


# --- Side processes: nginx in front of the inventory, the minimal Flask app --------------------------------

NGINX_CONF = """
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream inventory {{
        server 127.0.0.1:{inventory_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://inventory;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def start_side_processes(settings: Settings, stack: ExitStack, log_dir: Path) -> None:
    conf_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crud-master-bench-nginx-")))
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=conf_dir, port=settings.nginx_port,
                                      inventory_port=settings.env["INVENTORY_PORT"]))
    stack.enter_context(child(["nginx", "-c", str(conf), "-p", str(conf_dir)], "nginx", log_dir,
                              ready=lambda: port_open(settings.nginx_port)))
    python = ROOT / "srcs" / "inventory-app" / ".venv" / "bin" / "python"
    stack.enter_context(child([str(python), str(ROOT / "bench" / "minimal_inventory.py")], "minimal_inventory",
                              log_dir, env=settings.env,
                              ready=lambda: requests.get(f"http://127.0.0.1:{settings.minimal_port}/health",
                                                         timeout=1).ok))


def http_targets(settings: Settings) -> dict[str, str]:
    return {
        "direct": settings.inventory,
        "gateway": settings.gateway,
        # The same gateway, its front handing the GETs to the application (WRK_MODES) rather than to the inventory.
        "application": settings.gateway,
        "nginx": f"http://127.0.0.1:{settings.nginx_port}",
        "minimal": f"http://127.0.0.1:{settings.minimal_port}",
    }


# wrk's mode per target (bench/wrk/bench.lua), "ids" unless named here; and the headers that make a request of
# the check below take the same path.
WRK_MODES = {"application": "ids-via-application"}
VIA_APPLICATION_HEADERS = {"Connection": "keep-alive, X-Bench-Hop", "X-Bench-Hop": "1"}


def _headers_of(name: str) -> dict[str, str]:
    return VIA_APPLICATION_HEADERS if WRK_MODES.get(name) == "ids-via-application" else {}


def check_get_answers(settings: Settings) -> None:
    """Every target answers the same movie, and 404 for a missing one, before any load counts."""
    movie_id = DATASET_ROWS // 2
    expected = None
    for name, base in http_targets(settings).items():
        response = requests.get(f"{base}/api/movies/{movie_id}", headers=_headers_of(name), timeout=5)
        check(response.status_code == 200, f"{name}: GET /api/movies/{movie_id} -> {response.status_code}")
        body = response.json()
        check(body["id"] == movie_id, f"{name}: answered movie {body.get('id')} for {movie_id}")
        expected = expected or body
        check(body == expected, f"{name}: answered {body}, another target {expected}")
        missing = requests.get(f"{base}/api/movies/{DATASET_ROWS + 10}", headers=_headers_of(name), timeout=5)
        check(missing.status_code == 404, f"{name}: a missing movie -> {missing.status_code}")


def warm_up(settings: Settings) -> None:
    for name, base in http_targets(settings).items():
        loadgen.wrk(base + "/", WRK_MODES.get(name, "ids"), "/api/movies/", str(DATASET_ROWS),
                    connections=HTTP_CONNECTIONS, duration_s=1)


# --- Scenario: gateway proxy (and inventory direct vs the minimal app) ------------------------------------

def interleaved_gets(targets: dict[str, str], round_no: int,
                     watch: Callable[[str], AbstractContextManager[object]] = lambda _name: nullcontext(),
                     ) -> dict[str, list[loadgen.Load]]:
    """GET /api/movies/<random id> from each target, in HTTP_SLICES short slices per target, interleaved
    (A B C D, B C D A, ...): on a shared machine whose speed drifts within seconds, every target sees the same
    drift, so the ratios compare like with like. `watch(name)` is entered around each of that target's slices."""
    slices: dict[str, list[loadgen.Load]] = {name: [] for name in targets}
    names = list(targets)
    for slice_no in range(HTTP_SLICES):
        shift = (round_no + slice_no) % len(names)
        for name in names[shift:] + names[:shift]:
            with watch(name):
                slices[name].append(loadgen.wrk(targets[name] + "/", WRK_MODES.get(name, "ids"), "/api/movies/",
                                                str(DATASET_ROWS), connections=HTTP_CONNECTIONS,
                                                duration_s=HTTP_SECONDS // HTTP_SLICES))
    return slices


def slices_summary(loads: list[loadgen.Load]) -> tuple[float, float, float]:
    """Rate = all requests / all slice time; p50 and p99 the medians of the slices' own."""
    rate = sum(load.requests for load in loads) / sum(load.requests / load.rate for load in loads)
    return rate, statistics.median(load.p50_ms for load in loads), statistics.median(load.p99_ms for load in loads)


def http_get(settings: Settings, round_no: int) -> dict[str, float]:
    """GET /api/movies/<random id> through each target, interleaved (interleaved_gets)."""
    # Where a proxied GET's CPU goes: the front (nginx and front.py), the gateway's application, the inventory;
    # measured over the slices of each of the gateway's two paths.
    groups = {"front": process_tree(pm2_pid(settings, "api_gateway_front")),
              "app": process_tree(pm2_pid(settings, "api_gateway")),
              "inventory": process_tree(pm2_pid(settings, "inventory_app"))}
    paths = ("gateway", "application")
    cpu_spent = {(path, group): 0.0 for path in paths for group in groups}

    @contextmanager
    def gateway_cpu(name: str) -> Iterator[None]:
        before = {group: cpu_seconds(pids) for group, pids in groups.items()}
        yield
        if name in paths:
            for group, pids in groups.items():
                cpu_spent[name, group] += cpu_seconds(pids) - before[group]

    slices = interleaved_gets(http_targets(settings), round_no, gateway_cpu)
    figures: dict[str, float] = {}
    for path in paths:
        proxied = sum(load.requests for load in slices[path])
        for group in groups:
            figures[f"get_{path}_cpu_{group}_ms"] = cpu_spent[path, group] * 1000 / proxied
        log.info("  CPU per GET via %s: front %.3f ms, application %.3f ms, inventory %.3f ms", path,
                 *(figures[f"get_{path}_cpu_{group}_ms"] for group in groups))
    for name, loads in slices.items():
        rate, p50, p99 = slices_summary(loads)
        figures.update({f"get_{name}_rps": rate, f"get_{name}_p50": p50, f"get_{name}_p99": p99})
        log.info("  GET via %-8s %7.0f req/s  p50 %5.1f ms  p99 %5.1f ms", name, rate, p50, p99)
    return figures


# --- Scenario: one and two inventory instances (TOPOLOGY=ha's balancer) ------------------------------------

def inventory_instances(settings: Settings, round_no: int, log_dir: Path) -> dict[str, float]:
    """GET /api/movies/<random id> from the inventory: one instance direct, HAProxy over that one, HAProxy over two
    (a second instance, as PM2 runs it for TOPOLOGY=ha: the same server.py with NODE_APP_INSTANCE=1, on the app's
    ports + 1; TOPOLOGY=ha's balancer, scripts/load-balancer.sh), interleaved slices as http_get has them: what a
    second instance adds on this machine, and what the balancer costs."""
    port = int(settings.env["INVENTORY_PORT"])
    inventory = ROOT / "srcs" / "inventory-app"
    with ExitStack() as stack:
        stack.enter_context(child([str(inventory / ".venv" / "bin" / "python"), "server.py"], "inventory-instance-1",
                                  log_dir, env={**settings.env, "NODE_APP_INSTANCE": "1"}, cwd=inventory,
                                  ready=lambda: requests.get(f"http://127.0.0.1:{port + 1}/health", timeout=1).ok))
        targets = {"one": settings.inventory}
        for name, instances, balancer_port in (("balanced_one", 1, port + 20), ("balanced_two", 2, port + 21)):
            stack.enter_context(child(["bash", str(ROOT / "scripts" / "load-balancer.sh")], f"haproxy-{name}",
                                      log_dir, env=_balancer_env(settings, balancer_port, instances),
                                      ready=(lambda p: lambda: port_open(p))(balancer_port)))
            targets[name] = f"http://127.0.0.1:{balancer_port}"
        for name, base in targets.items():
            response = requests.get(f"{base}/api/movies/{DATASET_ROWS // 3}", timeout=5)
            check(response.status_code == 200 and response.json()["id"] == DATASET_ROWS // 3,
                  f"{name}: GET /api/movies/{DATASET_ROWS // 3} -> {response.status_code}")
        slices = interleaved_gets(targets, round_no)
    figures: dict[str, float] = {}
    for name, loads in slices.items():
        rate, _p50, p99 = slices_summary(loads)
        figures[f"inventories_{name}_rps"] = rate
        figures[f"inventories_{name}_p99"] = p99
    log.info("  inventory: one %6.0f req/s | HAProxy over one %6.0f | HAProxy over two %6.0f",
             figures["inventories_one_rps"], figures["inventories_balanced_one_rps"],
             figures["inventories_balanced_two_rps"])
    return figures


def _balancer_env(settings: Settings, port: int, instances: int) -> dict[str, str]:
    """scripts/load-balancer.sh's settings for a balancer over the first `instances` inventory instances only (its
    gateway side on ports of its own, with no instance behind them)."""
    return {**settings.env, "LB_INVENTORY_HOST": "127.0.0.1", "LB_INVENTORY_PORT": str(port),
            "LB_GATEWAY_HOST": "127.0.0.1", "LB_GATEWAY_PORT": str(port + 100), "GATEWAY_PORT": str(port + 300),
            "HA_INSTANCES": str(instances),
            "GATEWAY_RUNTIME_DIR": tempfile.mkdtemp(prefix="crud-master-bench-haproxy-")}


# --- Scenario: slow clients (GETs with and without connections that crawl) ------------------------------------

SLOW_CLIENTS = {"one_byte": 500, "headers": 100, "bodies": 50}
SLOW_EVERY_S = 1.0
# Long enough for wrk's run beside them; then the bodies stop, and the body timeout runs from their last byte.
SLOW_BODY_FOR_S = HTTP_SECONDS + 2


def slow_clients(settings: Settings, round_no: int) -> dict[str, float]:
    """wrk's GETs through the gateway alone, then with SLOW_CLIENTS held open beside them (one byte then
    nothing; a header that never ends; a body that crawls, then stops); then how long the front took to close
    each slow connection, against its configured timeouts: the header timeout counts from the first byte, the
    body timeout from the last one (nginx bounds the gap between two reads of a body, not its whole time)."""
    header_timeout = float(settings.env["GATEWAY_CLIENT_HEADER_TIMEOUT_S"])
    body_timeout = float(settings.env["GATEWAY_CLIENT_BODY_TIMEOUT_S"])
    url = settings.gateway + "/"
    alone = loadgen.wrk(url, "ids", "/api/movies/", str(DATASET_ROWS), connections=HTTP_CONNECTIONS,
                        duration_s=HTTP_SECONDS)
    port = int(settings.gateway.rsplit(":", 1)[1])
    slow = loadgen.SlowClients(port, SLOW_CLIENTS, every_s=SLOW_EVERY_S, body_for_s=SLOW_BODY_FOR_S)
    try:
        beside = loadgen.wrk(url, "ids", "/api/movies/", str(DATASET_ROWS), connections=HTTP_CONNECTIONS,
                             duration_s=HTTP_SECONDS)
        health = requests.get(settings.gateway + "/health", timeout=5)
        check(health.status_code == 200, f"/health beside the slow clients -> {health.status_code}")
        slow.watch(timeout_s=max(header_timeout, body_timeout) + SLOW_BODY_FOR_S + 10)
    finally:
        slow.close()
    figures = {"slow_get_alone_rps": alone.rate, "slow_get_alone_p99": alone.p99_ms,
               "slow_get_beside_rps": beside.rate, "slow_get_beside_p99": beside.p99_ms}
    for kind, timeout in (("one_byte", header_timeout), ("headers", header_timeout), ("bodies", body_timeout)):
        closed = slow.closed(kind)
        check(len(closed) == slow.count(kind),
              f"slow clients: {slow.count(kind) - len(closed)} of {slow.count(kind)} {kind} connections still open")
        figures[f"slow_{kind}_closed_max_s"] = max(closed)
        figures[f"slow_{kind}_timeout_s"] = timeout
    log.info("  GET alone %6.0f req/s p99 %5.1f ms | beside %d slow connections %6.0f req/s p99 %5.1f ms",
             alone.rate, alone.p99_ms, len(slow.connections), beside.rate, beside.p99_ms)
    log.info("  slow connections closed after at most: one byte %.1f s, headers %.1f s (timeout %.0f s), "
             "bodies %.1f s after their last byte (timeout %.0f s)", figures["slow_one_byte_closed_max_s"],
             figures["slow_headers_closed_max_s"], header_timeout, figures["slow_bodies_closed_max_s"], body_timeout)
    return figures


# --- Scenario: billing ingest (gateway POST vs raw pika) --------------------------------------------------

def wait_queue_empty(settings: Settings, timeout_s: float = 120) -> None:
    wait_until(lambda: queue_depth(settings) == 0, timeout_s, "billing_app to empty billing_queue", 0.2)


def billing_ingest(settings: Settings, round_no: int, figures_so_far: dict[str, float]) -> dict[str, float]:
    db = connect_db(settings, "BILLING")
    try:
        wait_queue_empty(settings)
        scalar(db, "SELECT 1")
        db.cursor().execute("TRUNCATE orders")
        gateway = loadgen.wrk(settings.gateway + "/api/billing", "post", "/api/billing", ORDER_JSON,
                              connections=INGEST_CONNECTIONS, duration_s=INGEST_SECONDS)
        prefix = f"bench-pika-r{round_no}"
        pika = loadgen.pika_confirmed(settings, prefix, PIKA_CONNECTIONS, INGEST_SECONDS)
        log.info("  ingest gateway %6.0f orders/s p50 %5.1f ms p99 %5.1f ms | raw pika %6.0f msg/s p50 %5.1f ms",
                 gateway.rate, gateway.p50_ms, gateway.p99_ms, pika.rate, pika.p50_ms)
        # Every 200 and every confirm must become exactly one row (wrk may stop with POSTs in flight: those were
        # published too, at most one per connection).
        counts = "SELECT count(*) FILTER (WHERE message_id LIKE %s), count(*) FILTER (WHERE message_id NOT LIKE %s) FROM orders"

        def stored() -> tuple[int, int]:
            with db.cursor() as cursor:
                cursor.execute(counts, (prefix + "-%", prefix + "-%"))
                return cursor.fetchone()

        wait_until(lambda: stored()[0] == pika.requests and stored()[1] >= gateway.requests, 120,
                   "every ingested order to be stored", 0.2)
        wait_queue_empty(settings)
        pika_rows, gateway_rows = stored()
        check(pika_rows == pika.requests, f"ingest: {pika_rows} rows for {pika.requests} confirmed pika messages")
        check(gateway.requests <= gateway_rows <= gateway.requests + INGEST_CONNECTIONS,
              f"ingest: {gateway_rows} rows for {gateway.requests} gateway 200s")
    finally:
        db.close()
    return {
        "ingest_rps": gateway.rate, "ingest_p50": gateway.p50_ms, "ingest_p99": gateway.p99_ms,
        "pika_rps": pika.rate, "pika_p50": pika.p50_ms, "pika_p99": pika.p99_ms,
    }


# --- Scenario: end to end (gateway 200 -> row in orders_db) -----------------------------------------------

E2E_POLL_S = 0.002


class RowWatcher:
    """Polls orders_db every E2E_POLL_S from its own connection and records when each new row first becomes
    visible (committed), by user_id: the end of the end-to-end figure, within one poll interval."""

    def __init__(self, settings: Settings) -> None:
        self._db = connect_db(settings, "BILLING")
        self._last_id = scalar(self._db, "SELECT coalesce(max(id), 0) FROM orders")
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> RowWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._db.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._db.cursor() as cursor:
                cursor.execute("SELECT id, user_id FROM orders WHERE id > %s ORDER BY id", (self._last_id,))
                rows = cursor.fetchall()
            now = time.time()
            for row_id, user_id in rows:
                self.seen.setdefault(user_id, now)
                self._last_id = row_id
            time.sleep(E2E_POLL_S)


def end_to_end(settings: Settings, round_no: int, ingest_rps: float) -> dict[str, float]:
    rate = ingest_rps / 2
    user_base = 1_000_000 * (round_no + 1)
    with RowWatcher(settings) as watcher:
        arrived = loadgen.paced_billing(settings, f"bench-e2e-r{round_no}", user_base, rate, E2E_SECONDS)
        wait_until(lambda: set(arrived) <= set(watcher.seen), 60, "the end-to-end orders to be stored", 0.1)
    db = connect_db(settings, "BILLING")
    try:
        users = sorted(arrived)
        count = scalar(db, "SELECT count(*) FROM orders WHERE user_id BETWEEN %s AND %s", (users[0], users[-1]))
    finally:
        db.close()
    check(count == len(users), f"end to end: {count} rows for {len(users)} orders (lost or duplicated)")
    delays = sorted((watcher.seen[user] - arrived[user]) * 1000 for user in users)
    p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    log.info("  end to end at %.0f/s: p50 %.1f ms p99 %.1f ms (%d orders)", rate, p50, p99, len(delays))
    return {"e2e_rate": rate, "e2e_p50": p50, "e2e_p99": p99}


# --- Scenario: billing drain (billing_app vs one message per commit) --------------------------------------

def _drain(settings: Settings, db, prefix: str, count: int, start_consumer) -> dict[str, float]:
    """Backlog `count` orders while no consumer runs, start one, time until every row is stored, verify."""
    dead = f"{settings.queue}.dead"
    dead_before = queue_depth(settings, dead)
    purge_queue(settings)
    db.cursor().execute("TRUNCATE orders")
    loadgen.publish_backlog(settings, prefix, count)
    wait_until(lambda: queue_depth(settings) == count, 60, f"the {count}-order backlog to be queued", 0.1)
    stored = lambda: scalar(db, "SELECT count(*) FROM orders")  # noqa: E731
    started = time.monotonic()
    stop = start_consumer()
    try:
        wait_until(lambda: stored() > 0, 60, "the consumer to store its first order", 0.02)
        first_at, first_count = time.monotonic(), stored()
        wait_until(lambda: stored() >= count, 600, f"the consumer to store {count} orders", 0.05)
        done_at = time.monotonic()
        wait_until(lambda: queue_depth(settings) == 0, 30, "the queue to be empty (acks)", 0.1)
    finally:
        stop()
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT message_id), count(*) FILTER (WHERE message_id LIKE %s) "
                       "FROM orders", (prefix + "-%",))
        rows, distinct, ours = cursor.fetchone()
    lost, duplicates = count - distinct, rows - distinct
    check(lost == 0 and duplicates == 0 and ours == count,
          f"drain {prefix}: {lost} lost, {duplicates} duplicates, {ours} of {count} rows ours")
    check(queue_depth(settings, dead) == dead_before, f"drain {prefix}: orders were dead-lettered")
    rate = (count - first_count) / (done_at - first_at) if done_at > first_at else float("inf")
    return {"rate": rate, "wall": done_at - started, "lost": lost, "duplicates": duplicates}


def billing_drain(settings: Settings, round_no: int, log_dir: Path) -> dict[str, float]:
    db = connect_db(settings, "BILLING")
    try:
        wait_queue_empty(settings)
        pm2(settings, "stop", "billing_app")

        def start_billing_app():
            pm2(settings, "start", "billing_app")
            return lambda: None

        batched = _drain(settings, db, f"bench-drain-r{round_no}", DRAIN_BACKLOG, start_billing_app)
        pm2(settings, "stop", "billing_app")

        def start_baseline():
            python = str(ROOT / "bench" / ".venv" / "bin" / "python")
            stack = ExitStack()
            stack.enter_context(child([python, str(ROOT / "bench" / "baseline_consumer.py")], "baseline_consumer",
                                      log_dir, env=settings.env))
            return stack.close

        baseline = _drain(settings, db, f"bench-baseline-r{round_no}", BASELINE_BACKLOG, start_baseline)

        # TOPOLOGY=ha's two consumers competing on the queue (pm2 scale, as make up TOPOLOGY=ha does), on the same
        # broker and database: what a second consumer adds on this machine.
        def start_two_consumers():
            pm2(settings, "start", "billing_app")
            pm2(settings, "scale", "billing_app", "2")
            return lambda: pm2(settings, "scale", "billing_app", "1")

        two = _drain(settings, db, f"bench-drain2-r{round_no}", DRAIN_BACKLOG, start_two_consumers)
    finally:
        if pm2_status(settings, "billing_app") != "online":
            pm2(settings, "start", "billing_app")
        db.close()
    log.info("  drain billing_app %6.0f orders/s (%d in %.1f s) | one per commit %6.0f orders/s (%d in %.1f s) "
             "| two billing_app %6.0f orders/s", batched["rate"], DRAIN_BACKLOG, batched["wall"], baseline["rate"],
             BASELINE_BACKLOG, baseline["wall"], two["rate"])
    return {
        "drain_rps": batched["rate"], "drain_wall_s": batched["wall"],
        "drain_lost": batched["lost"] + two["lost"], "drain_duplicates": batched["duplicates"] + two["duplicates"],
        "baseline_drain_rps": baseline["rate"], "baseline_drain_wall_s": baseline["wall"],
        "drain_two_consumers_rps": two["rate"],
    }


# --- Scenario: inventory at scale (title search, last page) -----------------------------------------------

def search_queries() -> dict[str, tuple[str, dict]]:
    """name -> (gateway path, SQL parameters of the same page)."""
    queries = {}
    for name, term in SEARCH_TERMS.items():
        # A page, as before the full list existed: the figure is the index's, not the transfer of 20,000 movies.
        queries[f"search_{name}"] = (f"/api/movies?title={term}&limit=20",
                                     {"after": 0, "limit": 21, "pattern": f"%{term}%"})
    after = DATASET_ROWS - LAST_PAGE_LIMIT
    queries["last_page"] = (f"/api/movies?limit={LAST_PAGE_LIMIT}&after={after}",
                            {"after": after, "limit": LAST_PAGE_LIMIT + 1, "pattern": None})
    return queries


def _sql(params: dict) -> str:
    return LIST_SQL.format(title="AND movies.title ILIKE %(pattern)s ESCAPE '\\' " if params["pattern"] else "")


def check_search_answers(settings: Settings) -> None:
    db = connect_db(settings, "INVENTORY")
    try:
        for name, (path, params) in search_queries().items():
            response = requests.get(settings.gateway + path, timeout=10)
            check(response.status_code == 200, f"{name}: GET {path} -> {response.status_code}")
            with db.cursor() as cursor:
                cursor.execute(_sql(params), params)
                expected = [row[0] for row in cursor.fetchall()]
            got = [movie["id"] for movie in response.json()]
            page = params["limit"] - 1
            check(got == expected[:page], f"{name}: the gateway's page differs from the database's")
            check(("rel=\"next\"" in response.headers.get("Link", "")) == (len(expected) > page),
                  f"{name}: wrong Link header {response.headers.get('Link')!r}")
            check(len(got) > 0, f"{name}: an empty page proves nothing")
    finally:
        db.close()


def inventory_search(settings: Settings, round_no: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    db = connect_db(settings, "INVENTORY")
    try:
        with db.cursor() as cursor:
            # The baseline: the same statement with every index path switched off, i.e. a sequential scan.
            cursor.execute("SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off")
        for name, (path, params) in search_queries().items():
            # One connection: the figure is the latency of one query, not queueing behind others.
            load = loadgen.wrk(settings.gateway + path, "get", path, connections=1, duration_s=SEARCH_SECONDS)
            timings = []
            for _ in range(SCAN_REPEATS):
                with db.cursor() as cursor:
                    started = time.perf_counter()
                    cursor.execute(_sql(params), params)
                    cursor.fetchall()
                    timings.append((time.perf_counter() - started) * 1000)
            scan = statistics.median(timings)
            figures.update({f"{name}_p50": load.p50_ms, f"{name}_p99": load.p99_ms, f"{name}_scan_ms": scan})
            log.info("  %-14s p50 %5.1f ms p99 %5.1f ms | seq scan %6.1f ms", name, load.p50_ms, load.p99_ms, scan)
        figures.update(_broad_search(settings, db))
    finally:
        db.close()
    return figures


# A term with a run of three letters (so it passes validation) whose trigrams are in nearly every title while the
# text itself is in almost none: the index narrows nothing down, and the search would recheck half the table.
BROAD_TERM = "the the"
BROAD_REQUESTS = 40


def _broad_search(settings: Settings, db) -> dict[str, float]:
    """The worst term the validation lets through: refused with a 400 naming `title` at the inventory's search
    timeout, never an answer that takes the database's time; beside it, what the database takes to run it."""
    path = f"/api/movies?title={BROAD_TERM.replace(' ', '%20')}&limit=20"
    timings = []
    for _ in range(BROAD_REQUESTS):
        started = time.perf_counter()
        response = requests.get(settings.gateway + path, timeout=10)
        timings.append((time.perf_counter() - started) * 1000)
        check(response.status_code == 400 and response.json()["details"][0]["field"] == "title",
              f"search_broad: GET {path} -> {response.status_code} {response.text[:200]}")
    params = {"after": 0, "limit": 21, "pattern": f"%{BROAD_TERM}%"}
    with db.cursor() as cursor:
        cursor.execute("RESET enable_indexscan; RESET enable_bitmapscan; RESET enable_indexonlyscan")
        started = time.perf_counter()
        cursor.execute(_sql(params), params)
        cursor.fetchall()
        planned = (time.perf_counter() - started) * 1000
    timings.sort()
    p50, p99 = statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    log.info("  search_broad   refused p50 %5.1f ms p99 %5.1f ms | the database running it %6.1f ms", p50, p99,
             planned)
    return {"search_broad_p50": p50, "search_broad_p99": p99, "search_broad_db_ms": planned}


# --- Scenario: the whole list (GET /api/movies, every movie, streamed) ---------------------------------------

# PostgreSQL writing the same JSON objects as fast as it can: the limit any service in front of it can reach.
COPY_SQL = ("COPY (SELECT row_to_json(m) FROM (SELECT id, title, description FROM movies ORDER BY id) m) "
            "TO STDOUT")
RSS_SAMPLE_S = 0.05


class RssSampler:
    """The summed resident memory of each service's processes (gunicorn's master and workers), sampled every
    RSS_SAMPLE_S while a transfer runs: its growth is peak minus the sample taken before."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self._pids = pids
        self.before = {name: self._rss(group) for name, group in pids.items()}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss(pids: list[int]) -> int:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/statm").read_text().split()
            except OSError:
                continue
            total += int(fields[1]) * 4096
        return total

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            for name, group in self._pids.items():
                self.peak[name] = max(self.peak[name], self._rss(group))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def growth_mb(self, name: str) -> float:
        return (self.peak[name] - self.before[name]) / 2**20


class _CountingSink:
    def __init__(self) -> None:
        self.size = 0
        self.lines = 0

    def write(self, data: bytes | str) -> None:
        self.size += len(data)
        self.lines += data.count(b"\n" if isinstance(data, bytes) else "\n")


def whole_list(settings: Settings, round_no: int) -> dict[str, float]:
    """Every one of the 1,000,000 movies through the gateway, read as it arrives; against PostgreSQL's own COPY of
    the same JSON objects. Checked: a complete JSON array of DATASET_ROWS objects, in one streamed answer."""
    pids = {"gateway": pm2_pids(settings, "api_gateway"), "inventory": pm2_pids(settings, "inventory_app")}
    with RssSampler(pids) as memory:
        started = time.perf_counter()
        with requests.get(settings.gateway + "/api/movies", stream=True, timeout=60) as response:
            check(response.status_code == 200, f"whole list: {response.status_code}")
            check(response.headers.get("Transfer-Encoding") == "chunked", "whole list: not streamed")
            size, objects, tail, first = 0, 0, b"", b""
            for chunk in response.iter_content(256 * 1024):
                first = first or chunk[:1]
                objects += (tail + chunk).count(b'{"id":') - tail.count(b'{"id":')
                tail = chunk[-8:]
                size += len(chunk)
        seconds = time.perf_counter() - started
    check(first == b"[" and tail.endswith(b"]\n"), "whole list: not one JSON array")
    check(objects == DATASET_ROWS, f"whole list: {objects} movies for {DATASET_ROWS}")
    db = connect_db(settings, "INVENTORY")
    try:
        sink = _CountingSink()
        copy_started = time.perf_counter()
        with db.cursor() as cursor:
            cursor.copy_expert(COPY_SQL, sink)
        copy_seconds = time.perf_counter() - copy_started
    finally:
        db.close()
    check(sink.lines == DATASET_ROWS, f"whole list: COPY wrote {sink.lines} rows")
    figures = {
        "list_s": seconds, "list_mbps": size / seconds / 2**20, "list_mb": size / 2**20,
        "list_copy_s": copy_seconds, "list_copy_mbps": sink.size / copy_seconds / 2**20,
        "list_gateway_rss_mb": memory.growth_mb("gateway"), "list_inventory_rss_mb": memory.growth_mb("inventory"),
    }
    log.info("  whole list %.1f MB in %.1f s (%.0f MB/s) | COPY %.1f s (%.0f MB/s) | RSS growth gateway %.1f MB, "
             "inventory %.1f MB", figures["list_mb"], seconds, figures["list_mbps"], copy_seconds,
             figures["list_copy_mbps"], figures["list_gateway_rss_mb"], figures["list_inventory_rss_mb"])
    return figures
