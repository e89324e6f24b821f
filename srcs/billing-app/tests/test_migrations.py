"""The schema is owned by Alembic: it upgrades, downgrades and matches the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from app.db import Base

from .support import alembic_config


def test_migrations_go_down_and_up_again(migrated_database, engine):
    cfg = alembic_config(migrated_database)
    command.downgrade(cfg, "base")
    assert "orders" not in inspect(engine).get_table_names()
    command.upgrade(cfg, "head")
    assert "orders" in inspect(engine).get_table_names()
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0001"


def test_schema_matches_the_models(migrated_database, engine):
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_message_id_is_unique_and_required(migrated_database, engine):
    insert = text(
        "INSERT INTO orders (user_id, number_of_items, total_amount, message_id) VALUES (1, 1, 1.00, :message_id)"
    )
    with engine.connect() as connection:
        connection.execute(insert, {"message_id": "same"})
        for message_id in ("same", None):
            try:
                with connection.begin_nested():
                    connection.execute(insert, {"message_id": message_id})
            except IntegrityError:
                pass
            else:
                raise AssertionError(f"message_id {message_id!r} was accepted twice or empty")
        connection.rollback()
