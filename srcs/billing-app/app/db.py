"""Database binding: one engine per process; sessions are opened and owned by the store (app/store.py)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import DeclarativeBase

from .config import Config


class Base(DeclarativeBase):
    pass


def make_engine(config: Config) -> Engine:
    billing = config.billing
    return config.database.engine(
        application_name="billing-app",
        connect_timeout_s=billing.db_connect_timeout_s,
        statement_timeout_ms=billing.db_statement_timeout_ms,
        # Connections die when PostgreSQL restarts; ping before use so a retry never gets a dead one.
        pool_pre_ping=True,
        # The consumer thread and the status endpoint's health probe.
        pool_size=2,
        max_overflow=2,
        pool_timeout=billing.db_connect_timeout_s,
    )
