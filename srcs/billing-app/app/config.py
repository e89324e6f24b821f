"""Settings of the billing service, read once from the environment and validated."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import URL


class ConfigError(ValueError):
    """The environment does not describe a usable service; the message names every problem."""


@dataclass(frozen=True)
class Config:
    database_url: URL
    rabbitmq_host: str
    rabbitmq_port: int
    rabbitmq_vhost: str
    rabbitmq_user: str
    rabbitmq_password: str = field(repr=False)
    queue: str
    status_host: str
    # 0 lets the OS pick a free port (tests run several consumers side by side).
    status_port: int
    # A batch is one INSERT and one commit: what has arrived when the first delivery comes, and what arrives
    # until batch_linger_ms after it, up to batch_size. Under load batches grow by themselves to what arrived while
    # the previous one committed; the linger gathers a steady stream of orders into a few commits instead of one
    # per order (at 1000 orders/s: 10 orders a batch instead of 2, a sixth less CPU per order across the
    # consumer, RabbitMQ and PostgreSQL; bench/README.md), at the price of those few milliseconds for a lone one.
    batch_size: int = 1000
    batch_linger_ms: int = 5
    # Twice the batch: the broker keeps streaming the next batch while this one commits.
    prefetch: int = 2000
    heartbeat_s: int = 30
    # Ceilings of the exponential backoffs (broker reconnects, database retries).
    reconnect_max_s: float = 30.0
    db_retry_max_s: float = 10.0
    # How long a batch is held unacked while the database is down before it is parked (handed back to the
    # queue as confirmed copies) and consuming pauses until the database answers again. Well below the
    # broker's consumer_timeout (30 min), which would otherwise return it and count that against the
    # queue's delivery limit.
    db_hold_max_s: float = 60.0
    db_connect_timeout_s: int = 3
    db_statement_timeout_ms: int = 15000

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        problems: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set")
            return value

        def integer(name: str, default: int | None, low: int, high: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                if default is None:
                    problems.append(f"{name} is not set")
                    return low
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                problems.append(f"{name}={raw!r} is not an integer in [{low}, {high}]")
                return low
            return int(raw)

        database_url = URL.create(
            "postgresql+psycopg2",
            username=required("BILLING_DB_USER"),
            password=required("BILLING_DB_PASSWORD"),
            host=required("BILLING_DB_HOST"),
            port=integer("BILLING_DB_PORT", None, 1, 65535),
            database=required("BILLING_DB_NAME"),
        )
        values = dict(
            database_url=database_url,
            rabbitmq_host=required("RABBITMQ_HOST"),
            rabbitmq_port=integer("RABBITMQ_PORT", None, 1, 65535),
            rabbitmq_vhost=required("RABBITMQ_VHOST"),
            rabbitmq_user=required("RABBITMQ_USER"),
            rabbitmq_password=required("RABBITMQ_PASSWORD"),
            queue=required("RABBITMQ_QUEUE"),
            status_host=required("BILLING_STATUS_HOST"),
            status_port=integer("BILLING_STATUS_PORT", None, 0, 65535),
            batch_size=integer("BILLING_BATCH_SIZE", cls.batch_size, 1, 5000),
            batch_linger_ms=integer("BILLING_BATCH_LINGER_MS", cls.batch_linger_ms, 0, 1000),
            prefetch=integer("BILLING_PREFETCH", cls.prefetch, 1, 65535),
            heartbeat_s=integer("BILLING_HEARTBEAT_S", cls.heartbeat_s, 0, 600),
            reconnect_max_s=integer("BILLING_RECONNECT_MAX_S", int(cls.reconnect_max_s), 1, 600),
            db_retry_max_s=integer("BILLING_DB_RETRY_MAX_S", int(cls.db_retry_max_s), 1, 600),
            db_hold_max_s=integer("BILLING_DB_HOLD_MAX_S", int(cls.db_hold_max_s), 0, 1200),
        )
        if values["status_host"] and not _is_loopback(values["status_host"]):
            problems.append(
                f"BILLING_STATUS_HOST={values['status_host']!r} is not a loopback address: the operator endpoint "
                "is for this machine only"
            )
        if problems:
            raise ConfigError("invalid billing settings: " + "; ".join(problems))
        if values["prefetch"] < values["batch_size"]:
            raise ConfigError("invalid billing settings: BILLING_PREFETCH must be at least BILLING_BATCH_SIZE")
        return cls(**values)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
