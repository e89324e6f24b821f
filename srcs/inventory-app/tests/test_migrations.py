"""The schema is owned by Alembic: it upgrades, downgrades and matches the models."""

from __future__ import annotations

from crud_common.testing import check_migrations
from sqlalchemy import text

from app.db import Base

from .support import SERVICE_DIR


def test_the_schema_is_the_migrations_and_matches_the_models(migrated_database):
    check_migrations(SERVICE_DIR, migrated_database, Base.metadata, table="movies", head="0002")


def test_title_search_uses_the_trigram_index(migrated_database, admin_engine):
    with admin_engine.begin() as connection:
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            connection.scalars(text("EXPLAIN SELECT id FROM movies WHERE title ILIKE '%godfather%'")).all()
        )
    assert "ix_movies_title_trgm" in plan


def test_title_statistics_are_fine_enough_for_a_steady_search_plan(migrated_database, admin_engine):
    # Migration 0002: with the default 100 histogram buckets, the plan of a common-term search flips with each
    # ANALYZE between a fast primary-key walk and a slow sort of every match.
    with admin_engine.connect() as connection:
        target = connection.scalar(text(
            "SELECT attstattarget FROM pg_attribute WHERE attrelid = 'movies'::regclass AND attname = 'title'"
        ))
    assert target == 1000
