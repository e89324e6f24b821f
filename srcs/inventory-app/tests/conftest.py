"""Fixtures built from the app factory, on the test database INVENTORY_TEST_DB_NAME (never movies_db)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from crud_common.testing import migrate
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from app import create_app
from app.config import Config

from .support import SERVICE_DIR, config_for_tests
from .tcp_proxy import TcpRelay


@pytest.fixture(scope="session")
def config() -> Config:
    return config_for_tests()


@pytest.fixture(scope="session")
def migrated_database(config: Config) -> URL:
    return migrate(SERVICE_DIR, config.database.url())


@pytest.fixture
def app(config: Config, migrated_database: URL) -> Iterator[Flask]:
    app = create_app(config)
    with app.extensions["database"].engine.begin() as connection:
        connection.execute(text("TRUNCATE movies RESTART IDENTITY"))
    yield app
    app.extensions["database"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_movie(client: FlaskClient):
    def make(title: str, description: str = "") -> dict:
        response = client.post("/api/movies", json={"title": title, "description": description})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return make


@pytest.fixture
def admin_engine(migrated_database: URL):
    engine = create_engine(migrated_database)
    yield engine
    engine.dispose()


@pytest.fixture
def relay(config: Config, migrated_database: URL) -> Iterator[TcpRelay]:
    """A switchable stand-in for the database's address (stopped until a test starts it)."""
    relay = TcpRelay((config.database.host, config.database.port))
    yield relay
    relay.stop()
