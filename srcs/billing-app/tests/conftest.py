"""Fixtures built from the factory and Config, on BILLING_TEST_DB_NAME and RABBITMQ_TEST_VHOST (never orders_db)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crud_common.testing import migrate
from sqlalchemy import Engine, create_engine, func, select, text

from app.config import Config
from app.models import Order

from .support import SERVICE_DIR, Broker, InProcessService, ServerProcess, config_for_tests, environ_for_tests


@pytest.fixture(scope="session")
def config() -> Config:
    """The suite's settings (orders_test_db, the test vhost, a queue of the suite's own), its database migrated:
    every test here needs the table."""
    config = config_for_tests()
    migrate(SERVICE_DIR, config.database.url())
    return config


@pytest.fixture(scope="session")
def engine(config: Config) -> Iterator[Engine]:
    """The test's own engine on orders_test_db (not the service's), for counting and truncating."""
    engine = create_engine(config.database.url(), pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture
def broker(config: Config) -> Broker:
    """A clean slate: empty orders table, freshly declared queues."""
    broker = Broker(config)
    broker.reset()
    return broker


@pytest.fixture
def orders(engine: Engine, broker: Broker) -> Callable[[], int]:
    """Truncates orders, then counts them on demand."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE orders RESTART IDENTITY"))

    def count() -> int:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Order))

    return count


@pytest.fixture
def stored_ids(engine: Engine) -> Callable[[], list[str]]:
    def ids() -> list[str]:
        with engine.connect() as connection:
            return list(connection.scalars(select(Order.message_id)))

    return ids


@pytest.fixture
def start_consumer(config: Config) -> Iterator[Callable[..., InProcessService]]:
    started: list[InProcessService] = []

    def start(**changes: object) -> InProcessService:
        """The consumer with some BillingSettings changed (batch sizes, holds, ...)."""
        changed = Config(billing=config.billing.model_copy(update=changes), database=config.database,
                         rabbitmq=config.rabbitmq)
        service = InProcessService(changed).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start server.py subprocesses with the test settings; any still running at teardown is killed."""
    started: list[ServerProcess] = []

    def start(**overrides: str) -> ServerProcess:
        process = ServerProcess(environ_for_tests(**overrides), tmp_path / f"server-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()

