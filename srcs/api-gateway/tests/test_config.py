"""Config.from_env: every problem named at once, defaults where the platform has none to give."""

from __future__ import annotations

import pytest

from app.config import Config, ConfigError

from .support import gateway_environment


def test_defaults_and_overrides():
    config = Config.from_env(gateway_environment(GATEWAY_THREADS="16", GATEWAY_INVENTORY_READ_TIMEOUT_S="2.5"))
    assert config.threads == 16 and config.workers == 2
    assert config.inventory_read_timeout_s == 2.5 and config.inventory_connect_timeout_s == 2.0
    assert config.rabbitmq.queue == "billing_queue"
    assert config.rabbitmq.password not in repr(config)


def test_every_problem_is_named():
    env = gateway_environment(GATEWAY_WORKERS="0", GATEWAY_AMQP_TIMEOUT_S="soon", INVENTORY_URL="localhost:8080",
                              RABBITMQ_QUEUE="bad queue", RABBITMQ_USER="")
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    message = str(caught.value)
    for expected in ("GATEWAY_WORKERS='0'", "GATEWAY_AMQP_TIMEOUT_S='soon'", "INVENTORY_URL='localhost:8080'",
                     "RABBITMQ_QUEUE='bad queue'", "RABBITMQ_USER is not set"):
        assert expected in message
