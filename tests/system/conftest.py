"""System tests: the whole platform, running under its own PM2 daemon, driven from outside the way users do.

scripts/test.sh starts that instance with `scripts/up.sh` on the test settings (TEST_* ports, the *_TEST_*
databases and vhost, TEST_PM2_HOME) and exports them, so the settings read here are the instance's.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pika
import psycopg2
import pytest
import requests
from crud_common.testing import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the tests leave for a person to look at (the Swagger UI screenshot), git-ignored.
OUTPUT_DIR = REPO_ROOT / "test-output"


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the system tests through `make test`")
    return value


@dataclass(frozen=True)
class Platform:
    gateway: str

    def pm2(self, *args: str) -> str:
        result = subprocess.run(["pm2", *args], capture_output=True, text=True, timeout=120, check=True)
        return result.stdout

    def post_order(self, order: dict, key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return requests.post(f"{self.gateway}/api/billing/", json=order, headers=headers, timeout=15)

    def orders_with_ids(self, message_ids: list[str]) -> dict[str, int]:
        """How many rows orders_db holds for each of these message ids (the `message_id` of a 200)."""
        with psycopg2.connect(
            host=env("BILLING_DB_HOST"), port=env("BILLING_DB_PORT"), dbname=env("BILLING_DB_NAME"),
            user=env("BILLING_DB_USER"), password=env("BILLING_DB_PASSWORD"), connect_timeout=5,
        ) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT message_id, count(*) FROM orders WHERE message_id = ANY(%s) GROUP BY message_id", (message_ids,)
            )
            return dict(cursor.fetchall())

    def stored_orders(self, message_ids: list[str]) -> dict[str, tuple[int, int, Decimal]]:
        """The (user_id, number_of_items, total_amount) orders_db holds under each of these message ids."""
        with psycopg2.connect(
            host=env("BILLING_DB_HOST"), port=env("BILLING_DB_PORT"), dbname=env("BILLING_DB_NAME"),
            user=env("BILLING_DB_USER"), password=env("BILLING_DB_PASSWORD"), connect_timeout=5,
        ) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT message_id, user_id, number_of_items, total_amount FROM orders WHERE message_id = ANY(%s)",
                (message_ids,),
            )
            return {message_id: (user_id, items, amount) for message_id, user_id, items, amount in cursor.fetchall()}

    def queue_depth(self, queue: str | None = None) -> int:
        """Messages ready in billing_queue, or in `queue` (a passive declare never changes the queue)."""
        credentials = pika.PlainCredentials(env("RABBITMQ_USER"), env("RABBITMQ_PASSWORD"))
        parameters = pika.ConnectionParameters(
            host=env("RABBITMQ_HOST"), port=int(env("RABBITMQ_PORT")), virtual_host=env("RABBITMQ_VHOST"),
            credentials=credentials, connection_attempts=3, retry_delay=1,
        )
        connection = pika.BlockingConnection(parameters)
        try:
            return connection.channel().queue_declare(queue or env("RABBITMQ_QUEUE"), passive=True).method.message_count
        finally:
            connection.close()


@pytest.fixture(scope="session")
def platform() -> Platform:
    platform = Platform(gateway=f"http://{env('GATEWAY_HOST')}:{env('GATEWAY_PORT')}")
    wait_for("the platform's gateway to report healthy", lambda: healthy(platform.gateway), timeout_s=60)
    return platform


def healthy(gateway: str) -> bool:
    try:
        return requests.get(f"{gateway}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def new_key() -> Iterator[Callable[[], str]]:
    yield lambda: f"system-{uuid.uuid4().hex}"
