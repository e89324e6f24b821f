"""The inventory's metrics: its requests (crud_common.metrics), and what the database failed."""

from __future__ import annotations

from crud_common.metrics import HttpMetrics, counter_by

# Why a request got the database's 503: unreachable or broken (connection refused, reset, a failover), a
# statement PostgreSQL cancelled at the statement timeout, no free pooled connection in time.
DATABASE_FAILURES = ("unavailable", "statement_timeout", "pool_exhausted")


class InventoryMetrics(HttpMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.database_errors = counter_by(self.registry, "inventory_database_errors",
                                          "Requests the database failed, by kind.", "kind", DATABASE_FAILURES)
