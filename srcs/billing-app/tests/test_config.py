"""Settings: every problem named at once; server.py exits 2 on them; no secret in a repr."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.config import Config, ConfigError

from .support import SERVICE_DIR, test_environment


def test_every_missing_or_invalid_setting_is_named():
    env = test_environment(RABBITMQ_PORT="amqp", BILLING_BATCH_SIZE="0", BILLING_BATCH_LINGER_MS="1001")
    del env["BILLING_DB_USER"], env["RABBITMQ_QUEUE"]
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    for name in ("BILLING_DB_USER", "RABBITMQ_QUEUE", "RABBITMQ_PORT", "BILLING_BATCH_SIZE", "BILLING_BATCH_LINGER_MS"):
        assert name in str(caught.value)


def test_prefetch_must_cover_a_batch():
    with pytest.raises(ConfigError, match="BILLING_PREFETCH"):
        Config.from_env(test_environment(BILLING_BATCH_SIZE="500", BILLING_PREFETCH="100"))


def test_names_derive_from_the_queue_and_secrets_stay_out_of_repr(config):
    assert config.dead_letter_exchange == f"{config.queue}.dlx"
    assert config.dead_letter_queue == f"{config.queue}.dead"
    assert config.rabbitmq_password not in repr(config)
    assert config.database_url.password not in repr(config)


def test_server_exits_2_on_invalid_settings():
    result = subprocess.run(
        [sys.executable, "server.py"], cwd=SERVICE_DIR, env=test_environment(BILLING_DB_PORT="x"),
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "BILLING_DB_PORT" in result.stdout + result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.56.12", "example.org", "::"])
def test_the_status_endpoint_is_loopback_only(host):
    with pytest.raises(ConfigError, match="BILLING_STATUS_HOST"):
        Config.from_env(test_environment(BILLING_STATUS_HOST=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_status_hosts_are_accepted(host):
    assert Config.from_env(test_environment(BILLING_STATUS_HOST=host)).status_host == host
