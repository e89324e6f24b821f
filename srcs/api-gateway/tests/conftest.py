"""Fixtures built from the app factory, against the real inventory, RabbitMQ and PostgreSQL, on test settings
only: the inventory on INVENTORY_TEST_DB_NAME, RabbitMQ on RABBITMQ_TEST_VHOST."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pika
from pika.adapters.blocking_connection import BlockingChannel
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from crud_common.billing import declare_billing_queue

from app import create_app
from app.config import Config

from .support import InventoryProcess, config_for_tests, environ_for_tests, migrate_inventory_test_database


@pytest.fixture(scope="session")
def inventory() -> Iterator[InventoryProcess]:
    migrate_inventory_test_database()
    process = InventoryProcess().start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def config(inventory: InventoryProcess) -> Config:
    return config_for_tests(INVENTORY_URL=inventory.url)


class WholeAnswerClient(FlaskClient):
    """Reads each answer to its end and closes it, as a WSGI server does: the proxy relays the inventory's body
    as it comes, and releases its upstream connection and writes its access line when the answer is closed."""

    def open(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - FlaskClient's signature
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def gateway_app(config: Config) -> Flask:
    app = create_app(config)
    app.test_client_class = WholeAnswerClient
    return app


@pytest.fixture
def app(config: Config) -> Flask:
    return gateway_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_client(config: Config):
    """A gateway with some settings changed (e.g. pointed at a stopped or slow inventory): `inventory_url`,
    `rabbitmq` (a dict of RabbitSettings changes), or any field of GatewaySettings."""

    def make(*, inventory_url: str | None = None, rabbitmq: dict | None = None, **gateway) -> FlaskClient:
        changed = Config(
            gateway=config.gateway.model_copy(update=gateway),
            inventory=config.inventory.model_copy(update={"url": inventory_url or config.inventory.url}),
            rabbitmq=config.rabbitmq.model_copy(update=rabbitmq or {}),
            metrics=config.metrics,
        )
        return gateway_app(changed).test_client()

    return make


@pytest.fixture
def clean_movies(inventory: InventoryProcess) -> None:
    assert requests.delete(f"{inventory.url}/api/movies", timeout=10).status_code == 200


@contextmanager
def open_channel(config: Config) -> Iterator[BlockingChannel]:
    """An operator's channel on the test vhost (not the gateway's code path)."""
    rabbit = config.rabbitmq
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            host=rabbit.host, port=rabbit.port, virtual_host=rabbit.vhost,
            credentials=pika.PlainCredentials(rabbit.user, rabbit.password.get_secret_value()), connection_attempts=20,
            retry_delay=0.5,
        )
    )
    try:
        yield connection.channel()
    finally:
        try:
            connection.close()
        except pika.exceptions.AMQPError:  # already closed by the broker (tests that kill connections)
            pass


@pytest.fixture
def amqp(config: Config) -> Iterator[BlockingChannel]:
    """billing_queue declared as the gateway declares it, and empty."""
    with open_channel(config) as channel:
        declare_billing_queue(channel, config.rabbitmq.queue)
        channel.queue_purge(config.rabbitmq.queue)
        yield channel
    # Leave the test vhost as found: the billing suite shares it.
    with open_channel(config) as channel:
        channel.queue_purge(config.rabbitmq.queue)


def pytest_configure(config: pytest.Config) -> None:
    # Test runs must never touch the platform's vhost or database.
    assert environ_for_tests().get("RABBITMQ_TEST_VHOST"), "RABBITMQ_TEST_VHOST is not set (.env)"
