"""Database binding: one engine per process; sessions are opened and owned by the consumer."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import DeclarativeBase

from .config import Config


class Base(DeclarativeBase):
    pass


def make_engine(config: Config) -> Engine:
    return create_engine(
        config.database_url,
        # Connections die when PostgreSQL restarts; ping before use so a retry never gets a dead one.
        pool_pre_ping=True,
        # The consumer thread and the status endpoint's health probe.
        pool_size=2,
        max_overflow=2,
        pool_timeout=config.db_connect_timeout_s,
        connect_args={
            "connect_timeout": config.db_connect_timeout_s,
            "options": f"-c statement_timeout={config.db_statement_timeout_ms}",
            "application_name": "billing-app",
        },
    )


def database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable" to an operator
        return False
