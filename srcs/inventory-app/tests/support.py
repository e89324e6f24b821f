"""Helpers of the inventory's suite: its settings pointed at the test database."""

from __future__ import annotations

from pathlib import Path

from crud_common import testing
from crud_common.settings import load

from app.config import Config

SERVICE_DIR = Path(__file__).resolve().parents[1]


def environ_for_tests(**overrides: str) -> dict[str, str]:
    """The platform's settings with the inventory on its test database (never movies_db) and its metrics on a
    free port (never a running platform's), plus `overrides`."""
    environ = testing.environ_for_tests()
    return {**environ, "INVENTORY_DB_NAME": environ["INVENTORY_TEST_DB_NAME"],
            "INVENTORY_METRICS_PORT": str(testing.free_port()), **overrides}


def config_for_tests(**overrides: str) -> Config:
    return load(Config, environ_for_tests(**overrides))
