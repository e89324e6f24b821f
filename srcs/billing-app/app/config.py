"""Settings of the billing service, read once at its entry point: the consumer's own (BILLING_*), its database
(BILLING_DB_*) and the broker (RABBITMQ_*), validated by pydantic-settings (crud_common.settings names every
bad variable)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal

from crud_common.settings import DatabaseSettings, Pm2InstanceSettings, RabbitSettings, Settings, part
from pydantic import AfterValidator, Field, model_validator


def _loopback(host: str) -> str:
    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError("must be a loopback address: the operator endpoint is for this machine only")


class BillingSettings(Settings):
    """BILLING_*: the operator endpoint, the batches, and every bound on retries and waits."""

    status_host: Annotated[str, AfterValidator(_loopback)]
    # 0 lets the OS pick a free port (tests run several consumers side by side).
    status_port: Annotated[int, Field(ge=0, le=65535)]
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # A batch is one INSERT and one commit: what has arrived when its first delivery comes, and what arrives until
    # batch_linger_ms after it, up to batch_size. Under load batches grow by themselves to what arrived while the
    # previous one committed; the linger gathers a steady stream into a few commits instead of one per order, at
    # the price of those few milliseconds for a lone one (bench/README.md, "billing: a batch also takes what arrives").
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 1000
    batch_linger_ms: Annotated[int, Field(ge=0, le=1000)] = 5
    # Twice the batch: the broker keeps streaming the next batch while this one commits.
    prefetch: Annotated[int, Field(ge=1, le=65535)] = 2000
    heartbeat_s: Annotated[int, Field(ge=0, le=600)] = 30
    # Ceilings of the exponential backoffs (broker reconnects, database retries).
    reconnect_max_s: Annotated[float, Field(ge=1, le=600)] = 30.0
    db_retry_max_s: Annotated[float, Field(ge=0.1, le=600)] = 10.0
    # How long a batch is held unacked while the database is down before it is parked (handed back to the queue
    # as confirmed copies) and consuming pauses until the database answers again. Well below the broker's
    # consumer_timeout (30 min), which would otherwise return it and count that against the delivery limit.
    db_hold_max_s: Annotated[float, Field(ge=0, le=1200)] = 60.0
    db_connect_timeout_s: Annotated[int, Field(ge=1, le=60)] = 3
    db_statement_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 15000

    @model_validator(mode="after")
    def _prefetch_holds_a_batch(self) -> BillingSettings:
        if self.prefetch < self.batch_size:
            raise ValueError("BILLING_PREFETCH must be at least BILLING_BATCH_SIZE (a batch must fit in flight)")
        return self


@dataclass(frozen=True)
class Config:
    billing: BillingSettings = part("BILLING_")
    database: DatabaseSettings = part("BILLING_DB_")
    rabbitmq: RabbitSettings = part("RABBITMQ_")
    pm2: Pm2InstanceSettings = part("NODE_APP_", default=Pm2InstanceSettings)

    def __post_init__(self) -> None:
        # Instance n of the consumer under PM2 (TOPOLOGY=ha runs two) serves its status on BILLING_STATUS_PORT + n.
        object.__setattr__(self, "billing", self.pm2.shift(self.billing, "status_port"))
