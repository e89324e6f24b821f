"""What an operator sees: the gateway's and the inventory's Prometheus metrics, scraped on their loopback
addresses while the platform runs under PM2, count every request through the gateway once, summed over every
gunicorn worker and the gateway's front (which carries the reads), and every order published; and a 200 of POST /api/billing is traced to its row in orders_db
by its request id."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg2
import requests
from crud_common.testing import wait_for

from .conftest import env

SAMPLE = re.compile(r"^(?P<series>[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (?P<value>\S+)$", re.M)


def scrape(host_variable: str, port_variable: str) -> dict[str, float]:
    answer = requests.get(f"http://{env(host_variable)}:{env(port_variable)}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    return {match["series"]: float(match["value"]) for match in SAMPLE.finditer(answer.text)}


def gateway_metrics() -> dict[str, float]:
    return scrape("GATEWAY_METRICS_HOST", "GATEWAY_METRICS_PORT")


def inventory_metrics() -> dict[str, float]:
    return scrape("INVENTORY_METRICS_HOST", "INVENTORY_METRICS_PORT")


def grew(before: dict[str, float], after: dict[str, float], series: str) -> float:
    return after.get(series, 0.0) - before.get(series, 0.0)


LISTED = 'http_requests_total{method="GET",route="/api/movies",status="200"}'
LISTED_TIME = 'http_request_duration_seconds_count{method="GET",route="/api/movies"}'
CONFIRMED = 'gateway_order_publishes_total{outcome="confirmed"}'


def test_every_request_is_counted_once_by_the_gateway_and_by_the_inventory(platform, new_key):
    gateway_before, inventory_before = gateway_metrics(), inventory_metrics()
    # Several requests, on fresh connections: with two workers each, both get some, and the sums hold.
    for _ in range(12):
        assert requests.get(f"{platform.gateway}/api/movies?limit=1", timeout=10).status_code == 200
    assert platform.post_order({"user_id": 4, "number_of_items": 1, "total_amount": "2.00"},
                               new_key()).status_code == 200
    # The reads went from the gateway's front straight to the inventory; the front counts each from nginx's log
    # line for it, which nginx writes in batches (every 0.2 s): the gateway's figure may lag that long.
    wait_for("the front to count the reads", lambda: grew(gateway_before, gateway_metrics(), LISTED) >= 12,
             timeout_s=5)
    gateway_after, inventory_after = gateway_metrics(), inventory_metrics()
    assert grew(gateway_before, gateway_after, LISTED) == 12
    assert grew(gateway_before, gateway_after, LISTED_TIME) == 12
    assert grew(inventory_before, inventory_after, LISTED) == 12
    assert grew(gateway_before, gateway_after, CONFIRMED) == 1
    assert grew(gateway_before, gateway_after,
                'http_requests_total{method="POST",route="/api/billing",status="200"}') == 1


def test_the_series_an_operator_alerts_on_exist_before_anything_failed():
    gateway, inventory = gateway_metrics(), inventory_metrics()
    for kind in ("unreachable", "timeout", "pool_exhausted", "bad_answer", "cut_off"):
        assert f'gateway_inventory_failures_total{{kind="{kind}"}}' in gateway
    for outcome in ("confirmed", "refused", "failed"):
        assert f'gateway_order_publishes_total{{outcome="{outcome}"}}' in gateway
    for kind in ("unavailable", "statement_timeout", "pool_exhausted"):
        assert f'inventory_database_errors_total{{kind="{kind}"}}' in inventory


def request_ids_stored(message_ids: list[str]) -> dict[str, str | None]:
    with psycopg2.connect(
        host=env("BILLING_DB_HOST"), port=env("BILLING_DB_PORT"), dbname=env("BILLING_DB_NAME"),
        user=env("BILLING_DB_USER"), password=env("BILLING_DB_PASSWORD"), connect_timeout=5,
    ) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT message_id, request_id FROM orders WHERE message_id = ANY(%s)", (message_ids,))
        return dict(cursor.fetchall())


def test_an_order_s_row_holds_the_request_id_of_the_200_that_placed_it(platform, new_key):
    given = requests.post(f"{platform.gateway}/api/billing", headers={"X-Request-ID": "trace-me-0001"},
                          json={"user_id": 5, "number_of_items": 1, "total_amount": "3.00"}, timeout=15)
    made = platform.post_order({"user_id": 6, "number_of_items": 1, "total_amount": "3.00"}, new_key())
    assert given.status_code == made.status_code == 200
    expected = {answer.json()["message_id"]: answer.headers["X-Request-ID"] for answer in (given, made)}
    assert expected[given.json()["message_id"]] == "trace-me-0001"
    wait_for("both orders stored", lambda: len(request_ids_stored(list(expected))) == 2)
    assert request_ids_stored(list(expected)) == expected


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_make_status_shows_the_queues_their_limits_and_the_key_figures(platform, new_key):
    assert platform.post_order({"user_id": 8, "number_of_items": 1, "total_amount": "1.00"}, new_key()).status_code == 200
    shown = subprocess.run(["bash", "scripts/status.sh"], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    output = shown.stdout
    queue = env("RABBITMQ_QUEUE")
    # billing_queue with billing_app's consumer, and its dead-letter queue; the lengths of .env in the policies.
    assert re.search(rf"^{re.escape(queue)}\s+\d+\s+\d+\s+1\s", output, re.M), output
    assert re.search(rf"^{re.escape(queue)}\.dead\s+\d+", output, re.M), output
    assert f'"max-length":{env("BILLING_QUEUE_MAX_LENGTH")}' in output.replace(" ", "")
    assert f'"max-length":{env("BILLING_DEAD_LETTER_MAX_LENGTH")}' in output.replace(" ", "")
    confirmed = re.search(r'gateway_order_publishes_total\{outcome="confirmed"\} (\S+)', output)
    assert confirmed and float(confirmed.group(1)) >= 1
    assert re.search(r'^\s+http_requests_total\{method="GET",route="/health",status="200"\}', output, re.M)
    assert "inventory_database_errors_total" in output and "billing_orders_stored_total" in output
    for name in ("gateway", "inventory", "billing"):
        assert re.search(rf"^{name}\s+http://\S+/health\n\s+\{{", output, re.M), f"{name}'s health: {output}"
