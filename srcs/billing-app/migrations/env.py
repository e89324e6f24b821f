"""Alembic environment of orders_db: the tables of app.models, the database of BILLING_DB_*."""

from alembic import context
from crud_common.migrations import run_migrations

from app import models  # noqa: F401 - registers the tables on Base.metadata
from app.db import Base

run_migrations(context, Base.metadata, database_prefix="BILLING_DB_", service="billing")
