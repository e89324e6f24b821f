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


@pytest.mark.parametrize(("instance", "shift"), [(None, 0), ("0", 0), ("1", 1)])
def test_each_pm2_instance_listens_on_the_app_s_ports_plus_its_number(instance, shift):
    # TOPOLOGY=ha: `pm2 scale inventory_app 2` numbers the instances in NODE_APP_INSTANCE.
    changes = {"INVENTORY_PORT": "8090", "INVENTORY_METRICS_PORT": "9121"}
    config = config_for_tests(**changes, **({"NODE_APP_INSTANCE": instance} if instance else {}))
    assert (config.server.port, config.metrics.port) == (8090 + shift, 9121 + shift)
