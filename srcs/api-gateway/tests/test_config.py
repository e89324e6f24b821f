"""The gateway's settings: every problem named at once, defaults where the platform has none to give."""

from __future__ import annotations

import pytest
from crud_common.settings import SettingsError

from .support import config_for_tests


def test_defaults_and_overrides():
    config = config_for_tests(GATEWAY_THREADS="16", GATEWAY_INVENTORY_READ_TIMEOUT_S="2.5")
    assert config.gateway.threads == 16 and config.gateway.workers == 2
    assert config.gateway.inventory_read_timeout_s == 2.5 and config.gateway.inventory_connect_timeout_s == 2.0
    assert config.rabbitmq.queue == "billing_queue"
    assert config.rabbitmq.password.get_secret_value() not in repr(config)


def test_every_problem_is_named():
    with pytest.raises(SettingsError) as caught:
        config_for_tests(GATEWAY_WORKERS="0", GATEWAY_AMQP_TIMEOUT_S="soon", INVENTORY_URL="localhost:8080",
                         RABBITMQ_QUEUE="bad queue", RABBITMQ_USER="", GATEWAY_OPENAPI_FILE="/nowhere.yaml")
    message = str(caught.value)
    for expected in ("GATEWAY_WORKERS='0'", "GATEWAY_AMQP_TIMEOUT_S='soon'", "INVENTORY_URL='localhost:8080'",
                     "RABBITMQ_QUEUE='bad queue'", "RABBITMQ_USER is not set", "GATEWAY_OPENAPI_FILE='/nowhere.yaml'"):
        assert expected in message


@pytest.mark.parametrize(("instance", "shift"), [(None, 0), ("1", 1)])
def test_each_pm2_instance_listens_on_the_gateway_s_ports_plus_its_number(instance, shift):
    # TOPOLOGY=ha: two gateways behind HAProxy; each front finds its own application by the socket named after
    # its port, since both are shifted alike.
    changes = {"GATEWAY_PORT": "3001", "GATEWAY_METRICS_PORT": "9111"}
    config = config_for_tests(**changes, **({"NODE_APP_INSTANCE": instance} if instance else {}))
    assert (config.gateway.port, config.metrics.port) == (3001 + shift, 9111 + shift)
    assert config.gateway.app_socket.name == f"gateway-{3001 + shift}.sock"
