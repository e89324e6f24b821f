"""The schema is owned by Alembic: it upgrades, downgrades and matches the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from app.db import Base

from .support import alembic_config


def test_migrations_go_down_and_up_again(migrated_database, admin_engine):
    cfg = alembic_config(migrated_database)
    command.downgrade(cfg, "base")
    assert "movies" not in inspect(admin_engine).get_table_names()
    command.upgrade(cfg, "head")
    assert "movies" in inspect(admin_engine).get_table_names()
    with admin_engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0002"


def test_schema_matches_the_models(migrated_database, admin_engine):
    with admin_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


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
