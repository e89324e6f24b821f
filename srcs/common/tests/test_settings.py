"""Settings: the shared parts read under their prefixes, every bad variable named, secrets never echoed."""

from __future__ import annotations

import subprocess
import sys

from typing import Annotated

import pytest
from pydantic import Field, SecretStr

from dataclasses import dataclass

from crud_common.amqp import node_after, node_parameters
from crud_common.settings import (
    DatabaseSettings, MetricsSettings, Pm2InstanceSettings, RabbitSettings, Settings, SettingsError, environment, load,
    load_parts, part,
)

DATABASE = {"INVENTORY_DB_HOST": "127.0.0.1", "INVENTORY_DB_PORT": "5432", "INVENTORY_DB_NAME": "movies_db",
            "INVENTORY_DB_USER": "inventory_user", "INVENTORY_DB_PASSWORD": "s3cret-value"}
RABBIT = {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": "5672", "RABBITMQ_VHOST": "v", "RABBITMQ_USER": "u",
          "RABBITMQ_PASSWORD": "also-s3cret", "RABBITMQ_QUEUE": "billing_queue"}


@dataclass(frozen=True)
class ServiceConfig:
    database: DatabaseSettings = part("INVENTORY_DB_")
    rabbit: RabbitSettings = part("RABBITMQ_")


def test_each_part_is_read_under_its_prefix():
    config = load(ServiceConfig, {**DATABASE, **RABBIT, "BILLING_DB_HOST": "elsewhere"})
    database = config.database
    assert (database.host, database.port, database.name) == ("127.0.0.1", 5432, "movies_db")
    assert database.url().render_as_string(hide_password=False).endswith("s3cret-value@127.0.0.1:5432/movies_db")
    assert "s3cret" not in repr(config)


def test_every_bad_variable_of_every_part_is_named_and_no_secret_echoed():
    environ = {**DATABASE, **RABBIT, "INVENTORY_DB_PORT": "not-a-port", "RABBITMQ_PORT": "70000",
               "RABBITMQ_QUEUE": "no spaces", "INVENTORY_DB_PASSWORD": "", "RABBITMQ_HOST": "   "}
    with pytest.raises(SettingsError) as caught:
        load(ServiceConfig, environ)
    problems = caught.value.problems
    assert "INVENTORY_DB_PASSWORD is not set" in problems and "RABBITMQ_HOST is not set" in problems
    assert any(p.startswith("INVENTORY_DB_PORT='not-a-port': ") for p in problems)
    assert any(p.startswith("RABBITMQ_PORT='70000': ") for p in problems)
    assert any(p.startswith("RABBITMQ_QUEUE='no spaces': ") for p in problems)
    assert len(problems) == 5


def test_the_broker_may_be_one_node_or_several():
    one = load(ServiceConfig, {**DATABASE, **RABBIT}).rabbit
    assert one.nodes == (("127.0.0.1", 5672),)
    several = load(ServiceConfig, {**DATABASE, **RABBIT,
                                   "RABBITMQ_HOST": "127.0.0.1:5681, 127.0.0.1:5682,broker-3.internal"}).rabbit
    assert several.nodes == (("127.0.0.1", 5681), ("127.0.0.1", 5682), ("broker-3.internal", 5672))


@pytest.mark.parametrize("nodes", ["127.0.0.1,", "127.0.0.1:0", "127.0.0.1:70000", "host:port", "a b", "-x"])
def test_a_bad_node_is_named(nodes):
    with pytest.raises(SettingsError) as caught:
        load(ServiceConfig, {**DATABASE, **RABBIT, "RABBITMQ_HOST": nodes})
    assert [p.split(":", 1)[0].split("=", 1)[0] for p in caught.value.problems] == ["RABBITMQ_HOST"]


def test_each_client_starts_at_a_node_and_takes_the_others_in_turn():
    rabbit = load(ServiceConfig, {**DATABASE, **RABBIT, "RABBITMQ_HOST": "a:1,b:2,c:3"}).rabbit
    order = [[(p.host, p.port) for p in node_parameters(rabbit, first=first)] for first in (0, 1, 5)]
    assert order == [[("a", 1), ("b", 2), ("c", 3)], [("b", 2), ("c", 3), ("a", 1)], [("c", 3), ("a", 1), ("b", 2)]]
    parameters = node_parameters(rabbit, first=0, heartbeat=7)[2]
    assert (parameters.virtual_host, parameters.credentials.username, parameters.heartbeat) == ("v", "u", 7)
    assert {tuple((p.host, p.port) for p in node_parameters(rabbit))[0] for _ in range(200)} == {("a", 1), ("b", 2), ("c", 3)}
    assert [node_after(rabbit, host, port) for host, port in (("a", 1), ("c", 3), ("elsewhere", 9))] == [1, 0, 0]


class Token(Settings):
    token: Annotated[SecretStr, Field(min_length=16)]


def test_a_bad_secret_is_named_without_its_value():
    with pytest.raises(SettingsError) as caught:
        load_parts({"api": (Token, "API_")}, {"API_TOKEN": "short-secret"})
    assert caught.value.problems[0].startswith("API_TOKEN=(hidden): ")
    assert "short-secret" not in str(caught.value)


def test_the_env_file_is_read_under_the_environment_which_wins(tmp_path, monkeypatch):
    env_file = tmp_path / "test.env"
    env_file.write_text("# a comment\nFROM_FILE=file\nBOTH=file\n")
    monkeypatch.setenv("CRUD_MASTER_ENV_FILE", str(env_file))
    monkeypatch.setenv("BOTH", "environment")
    environ = environment()
    assert environ["FROM_FILE"] == "file" and environ["BOTH"] == "environment"


def test_a_database_engine_bounds_every_wait():
    engine = load(ServiceConfig, {**DATABASE, **RABBIT}).database.engine(
        application_name="test", connect_timeout_s=3, statement_timeout_ms=5000, pool_size=2)
    arguments = engine.dialect.create_connect_args(engine.url)[1]
    assert engine.pool.size() == 2 and engine.url.password == "s3cret-value"
    assert "s3cret" not in repr(engine)
    assert arguments["host"] == "127.0.0.1" and arguments["dbname"] == "movies_db"


def test_an_entry_point_with_bad_settings_exits_2_naming_them():
    script = ("from dataclasses import dataclass; from crud_common.logs import configure_logging; "
              "from crud_common.settings import *; configure_logging()\n"
              "@dataclass\nclass C:\n    rabbit: RabbitSettings = part('NOWHERE_')\n"
              "load_or_exit(C, 'test')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "invalid test settings: NOWHERE_HOST is not set" in result.stdout
    assert result.stdout.count("invalid test settings") == 6



class StatusSettings(Settings):
    status_port: int


@pytest.mark.parametrize(("instance", "port", "listens_on"), [(0, 8081, 8081), (1, 8081, 8082), (3, 8081, 8084),
                                                              (1, 0, 0)])
def test_a_pm2_instance_listens_on_its_app_s_port_plus_its_number(instance, port, listens_on):
    # Port 0 is any free port, which stays any free port.
    listener = StatusSettings(status_port=port)
    assert Pm2InstanceSettings(instance=instance).shift(listener, "status_port").status_port == listens_on
    assert listener.status_port == port  # a copy: the app's own settings are left as they are


def test_a_pm2_instance_shifts_port_unless_told_another_field():
    assert Pm2InstanceSettings(instance=2).shift(MetricsSettings(port=9101)).port == 9103
