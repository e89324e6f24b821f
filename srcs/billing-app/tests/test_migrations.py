"""The schema is owned by Alembic: it upgrades, downgrades and matches the models."""

from __future__ import annotations

from crud_common.testing import check_migrations
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db import Base

from .support import SERVICE_DIR


def test_the_schema_is_the_migrations_and_matches_the_models(config):
    check_migrations(SERVICE_DIR, config.database.url(), Base.metadata, table="orders", head="0002")


def test_message_id_is_unique_and_required(engine):
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
