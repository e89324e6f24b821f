"""Settings are validated once, with every problem named."""

from __future__ import annotations

import pytest
from crud_common.settings import SettingsError

from .support import config_for_tests


def test_a_complete_environment_gives_a_config():
    config = config_for_tests(INVENTORY_PORT="8080", INVENTORY_WORKERS="3")
    assert (config.server.port, config.server.workers, config.server.threads) == (8080, 3, 8)
    assert config.database.url().drivername == "postgresql+psycopg2"


def test_every_missing_or_bad_setting_is_named():
    with pytest.raises(SettingsError) as error:
        config_for_tests(INVENTORY_PORT="http", INVENTORY_THREADS="0", INVENTORY_DB_PASSWORD="")
    message = str(error.value)
    assert "INVENTORY_DB_PASSWORD is not set" in message
    assert "INVENTORY_PORT='http'" in message
    assert "INVENTORY_THREADS='0'" in message
