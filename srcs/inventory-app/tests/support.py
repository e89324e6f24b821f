"""Helpers shared by the tests: the test environment and Alembic pointed at the test database."""

from __future__ import annotations

import os
from pathlib import Path

from alembic.config import Config as AlembicConfig
from dotenv import load_dotenv
from sqlalchemy.engine import URL

SERVICE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SERVICE_DIR.parents[1]

load_dotenv(REPO_ROOT / ".env", override=False)


def test_environment(**overrides: str) -> dict[str, str]:
    """The service's environment, pointed at the test database."""
    env = dict(os.environ)
    env["INVENTORY_DB_NAME"] = env["INVENTORY_TEST_DB_NAME"]
    env.update(overrides)
    return env


test_environment.__test__ = False  # a helper, not a test (pytest collects test_* names)


def alembic_config(database_url: URL) -> AlembicConfig:
    cfg = AlembicConfig(str(SERVICE_DIR / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


