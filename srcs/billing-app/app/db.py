"""Database binding: one engine per process; sessions are opened and owned by the store (app/store.py)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase

from .config import Config


class Base(DeclarativeBase):
    pass


def make_engine(config: Config) -> Engine:
    billing = config.billing
    return create_engine(
        config.database.url(),
        # Connections die when PostgreSQL restarts; ping before use so a retry never gets a dead one.
        pool_pre_ping=True,
        # The consumer thread and the status endpoint's health probe.
        pool_size=2,
        max_overflow=2,
        pool_timeout=billing.db_connect_timeout_s,
        connect_args={
            "connect_timeout": billing.db_connect_timeout_s,
            "options": f"-c statement_timeout={billing.db_statement_timeout_ms}",
            "application_name": "billing-app",
        },
    )
