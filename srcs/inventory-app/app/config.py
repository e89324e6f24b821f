"""Settings of the inventory service, read once at its entry point: where it listens (INVENTORY_*), its
database (INVENTORY_DB_*) and where its metrics are served (INVENTORY_METRICS_*), validated by pydantic-settings
(crud_common.settings names every bad variable)."""

from __future__ import annotations

from dataclasses import dataclass

from crud_common.settings import DatabaseSettings, HttpServerSettings, MetricsSettings, part


@dataclass(frozen=True)
class Config:
    server: HttpServerSettings = part("INVENTORY_")
    database: DatabaseSettings = part("INVENTORY_DB_")
    metrics: MetricsSettings = part("INVENTORY_METRICS_")
    # Bounded waits, so that a dead or slow database turns into a quick 503, never a hung request.
    db_connect_timeout_s: int = 3
    db_statement_timeout_ms: int = 5000
    # A title search's own bound: a term the trigram index cannot narrow down is refused (400) rather than
    # scanning the table, the answer within 300 ms (bench/README.md, "inventory at scale, broad term").
    db_search_timeout_ms: int = 250
    db_pool_timeout_s: int = 5
    max_body_bytes: int = 64 * 1024
