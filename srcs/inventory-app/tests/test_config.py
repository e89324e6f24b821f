"""Settings are validated once, with every problem named."""

from __future__ import annotations

import pytest

from app.config import Config, ConfigError

from .support import test_environment


def test_a_complete_environment_gives_a_config():
    config = Config.from_env(test_environment(INVENTORY_PORT="8080", INVENTORY_WORKERS="3"))
    assert config.port == 8080
    assert config.workers == 3
    assert config.database_url.drivername == "postgresql+psycopg2"


def test_every_missing_or_bad_setting_is_named():
    env = test_environment(INVENTORY_PORT="http", INVENTORY_THREADS="0")
    del env["INVENTORY_DB_PASSWORD"]
    with pytest.raises(ConfigError) as error:
        Config.from_env(env)
    message = str(error.value)
    assert "INVENTORY_DB_PASSWORD is not set" in message
    assert "INVENTORY_PORT='http'" in message
    assert "INVENTORY_THREADS='0'" in message
