"""Settings of the inventory service, read once at its entry point: where it listens (INVENTORY_*), its
database (INVENTORY_DB_*) and where its metrics are served (INVENTORY_METRICS_*), validated by pydantic-settings
(crud_common.settings names every bad variable)."""

from __future__ import annotations

from dataclasses import dataclass

from crud_common.settings import DatabaseSettings, HttpServerSettings, MetricsSettings, Pm2InstanceSettings, part


@dataclass(frozen=True)
class Config:
    server: HttpServerSettings = part("INVENTORY_")
    database: DatabaseSettings = part("INVENTORY_DB_")
    metrics: MetricsSettings = part("INVENTORY_METRICS_")
    pm2: Pm2InstanceSettings = part("NODE_APP_", default=Pm2InstanceSettings)

    def __post_init__(self) -> None:
        # Instance n of the app under PM2 (TOPOLOGY=ha runs two) listens on each of the app's ports plus n.
        object.__setattr__(self, "server", self.pm2.shift(self.server))
        object.__setattr__(self, "metrics", self.pm2.shift(self.metrics))
    # Bounded waits, so that a dead or slow database turns into a quick 503, never a hung request.
    db_connect_timeout_s: int = 3
    db_statement_timeout_ms: int = 5000
    # A title search's own bound: a term the trigram index cannot narrow down is refused (400) rather than
    # scanning the table, the answer within 300 ms (bench/README.md, "inventory at scale, broad term").
    db_search_timeout_ms: int = 250
    db_pool_timeout_s: int = 5
    max_body_bytes: int = 64 * 1024
