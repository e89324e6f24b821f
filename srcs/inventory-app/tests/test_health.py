"""/health tells the truth about the database, quickly, and the service recovers without a restart."""

from __future__ import annotations

import time

import pytest

from app import create_app

from .support import config_for_tests


def test_health_is_200_when_the_database_answers(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "up"}}


@pytest.fixture
def relayed_client(relay):
    app = create_app(config_for_tests(INVENTORY_DB_HOST="127.0.0.1", INVENTORY_DB_PORT=str(relay.port)))
    yield app.test_client()
    app.extensions["database"].engine.dispose()


def test_service_starts_with_the_database_down_and_recovers_when_it_returns(relay, relayed_client):
    # The app was built while nothing listened on the database port: no crash, a quick 503 with the reason.
    started = time.monotonic()
    response = relayed_client.get("/health")
    assert response.status_code == 503
    assert time.monotonic() - started < 10
    body = response.get_json()
    assert body["error"] == "service_unavailable"
    assert body["message"].startswith("database unavailable")
    assert body["checks"] == {"database": "down"}

    # Requests that need the database also answer 503 in the error shape, never a 500.
    listing = relayed_client.get("/api/movies")
    assert listing.status_code == 503
    assert listing.get_json()["error"] == "service_unavailable"
    registry = relayed_client.application.extensions["metrics"].registry
    assert registry.get_sample_value("inventory_database_errors_total", {"kind": "unavailable"}) >= 1
    assert registry.get_sample_value("inventory_database_errors_total", {"kind": "statement_timeout"}) == 0

    relay.start()
    assert relayed_client.get("/health").status_code == 200
    assert relayed_client.post("/api/movies", json={"title": "Back"}).status_code == 200

    # The database goes away under open pooled connections, then comes back: both are noticed.
    relay.stop()
    assert relayed_client.get("/health").status_code == 503
    assert relayed_client.post("/api/movies", json={"title": "Lost"}).status_code == 503
    relay.start()
    assert relayed_client.get("/health").status_code == 200
    assert [m["title"] for m in relayed_client.get("/api/movies").get_json()][-1] == "Back"


def test_reads_survive_a_database_restart_under_pooled_connections(relay, relayed_client):
    relay.start()
    created = relayed_client.post("/api/movies", json={"title": "Pooled"}).get_json()
    assert relayed_client.get(f"/api/movies/{created['id']}").status_code == 200  # the pool now holds connections
    # The database restarts: every pooled connection is dead, though nothing has noticed yet.
    relay.stop()
    relay.start()
    # No ping before use: the first statement fails on a dead connection, and a read is retried on a fresh one.
    assert relayed_client.get(f"/api/movies/{created['id']}").get_json() == created
    relay.stop()
    relay.start()
    assert created in relayed_client.get("/api/movies").get_json()
    relay.stop()
    relay.start()
    assert relayed_client.get("/health").status_code == 200
