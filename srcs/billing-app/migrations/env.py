"""Alembic environment: the URL comes from the service's own settings (or from the caller, in tests)."""

from __future__ import annotations

import os
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from dotenv import load_dotenv
from sqlalchemy import create_engine

from app import models  # noqa: F401 - registers the tables on Base.metadata
from app.config import Config
from app.db import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url():
    # Tests pass the URL of their own database; otherwise the service's environment decides.
    if "database_url" in config.attributes:
        return config.attributes["database_url"]
    load_dotenv(Path(__file__).resolve().parents[3] / ".env", override=False)
    return Config.from_env(os.environ).database_url


def run_migrations_online() -> None:
    engine = create_engine(database_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against the database")
run_migrations_online()
