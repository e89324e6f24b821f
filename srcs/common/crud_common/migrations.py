"""The Alembic environment of both databases: each service's `migrations/env.py` hands over its tables and how
to read its database settings, and this runs the migrations online (there is no offline SQL script mode)."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from sqlalchemy import MetaData, create_engine

from .settings import DatabaseSettings, SettingsError, load_parts


def run_migrations(context: Any, metadata: MetaData, *, database_prefix: str, service: str) -> None:
    """Migrate the database its settings name (`database_prefix`: INVENTORY_DB_ or BILLING_DB_; nothing else of
    the service's settings is needed), or the one whose URL a caller (a test) put in the Alembic config's
    attributes, which then also decide whether Alembic configures logging."""
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        raise SystemExit("offline (SQL script) migrations are not supported; run against the database")
    url = config.attributes.get("database_url") or _database_url(database_prefix, service)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _database_url(prefix: str, service: str) -> Any:
    try:
        return load_parts({"database": (DatabaseSettings, prefix)})["database"].url()
    except SettingsError as exc:
        raise SystemExit(f"invalid {service} database settings: {exc}") from None
