"""Alembic environment of movies_db: the tables of app.models, the database of INVENTORY_DB_*."""

from alembic import context
from crud_common.migrations import run_migrations

from app import models  # noqa: F401 - registers the tables on Base.metadata
from app.db import Base

run_migrations(context, Base.metadata, database_prefix="INVENTORY_DB_", service="inventory")
