"""Settings: every problem named at once; server.py exits 2 on them; no secret in a repr."""

from __future__ import annotations

import subprocess
import sys

import pytest
from crud_common.settings import SettingsError

from .support import SERVICE_DIR, config_for_tests, environ_for_tests


def test_every_missing_or_invalid_setting_is_named():
    with pytest.raises(SettingsError) as caught:
        config_for_tests(RABBITMQ_PORT="amqp", BILLING_BATCH_SIZE="0", BILLING_BATCH_LINGER_MS="1001",
                         BILLING_DB_USER="", RABBITMQ_QUEUE="", BILLING_LOG_LEVEL="LOUD")
    for name in ("BILLING_DB_USER", "RABBITMQ_QUEUE", "RABBITMQ_PORT", "BILLING_BATCH_SIZE", "BILLING_BATCH_LINGER_MS",
                 "BILLING_LOG_LEVEL"):
        assert name in str(caught.value)


def test_prefetch_must_cover_a_batch():
    with pytest.raises(SettingsError, match="BILLING_PREFETCH must be at least BILLING_BATCH_SIZE"):
        config_for_tests(BILLING_BATCH_SIZE="500", BILLING_PREFETCH="100")


def test_secrets_stay_out_of_repr(config):
    assert config.rabbitmq.password.get_secret_value() not in repr(config)
    assert config.database.password.get_secret_value() not in repr(config)


def test_server_exits_2_on_invalid_settings():
    environ = environ_for_tests(BILLING_DB_PORT="x", BILLING_LOG_LEVEL="LOUD")
    result = subprocess.run([sys.executable, "server.py"], cwd=SERVICE_DIR, env=environ, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "BILLING_DB_PORT='x'" in result.stdout and "BILLING_LOG_LEVEL='LOUD'" in result.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.56.12", "example.org", "::"])
def test_the_status_endpoint_is_loopback_only(host):
    with pytest.raises(SettingsError, match="BILLING_STATUS_HOST"):
        config_for_tests(BILLING_STATUS_HOST=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_status_hosts_are_accepted(host):
    assert config_for_tests(BILLING_STATUS_HOST=host).billing.status_host == host


@pytest.mark.parametrize(("port", "instance", "listens_on"), [("8081", None, 8081), ("8081", "0", 8081),
                                                              ("8081", "1", 8082), ("0", "1", 0)])
def test_each_pm2_instance_has_its_own_status_port(port, instance, listens_on):
    # TOPOLOGY=ha runs two consumers: `pm2 scale billing_app 2` numbers them in NODE_APP_INSTANCE.
    changes = {"BILLING_STATUS_PORT": port} | ({"NODE_APP_INSTANCE": instance} if instance is not None else {})
    assert config_for_tests(**changes).billing.status_port == listens_on


def test_a_bad_pm2_instance_is_named():
    with pytest.raises(SettingsError, match="NODE_APP_INSTANCE"):
        config_for_tests(NODE_APP_INSTANCE="first")
