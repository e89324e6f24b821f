"""The gateway's metrics, as an operator reads them: every request under its route, proxied or not. (What the
inventory failed and what became of each order are counted in test_upstream_failures and test_billing, beside
the failures themselves; the endpoint that serves them across workers in test_server.)"""

from __future__ import annotations

import pytest

from app.proxy import route_of


def counted(client, route: str, method: str, status: int) -> float:
    registry = client.application.extensions["metrics"].registry
    return registry.get_sample_value(
        "http_requests_total", {"route": route, "method": method, "status": str(status)}) or 0.0


def test_proxied_requests_are_counted_under_the_inventory_s_routes(client, clean_movies):
    assert client.get("/api/movies").status_code == 200
    assert client.get("/api/movies/").status_code == 200
    created = client.post("/api/movies", json={"title": "Counted"})
    assert created.status_code == 200
    assert client.get(f"/api/movies/{created.get_json()['id']}").status_code == 200
    assert client.get(f"/api/movies/{created.get_json()['id']}/").status_code == 200
    assert client.get("/api/movies/999999999").status_code == 404
    # One series per route, never one per movie or per made-up path.
    assert client.get("/api/movies/1/2/3").status_code == 404
    assert counted(client, "/api/movies", "GET", 200) == 2
    assert counted(client, "/api/movies", "POST", 200) == 1
    assert counted(client, "/api/movies/<movie_id>", "GET", 200) == 2
    assert counted(client, "/api/movies/<movie_id>", "GET", 404) == 1
    assert counted(client, "unmatched", "GET", 404) == 1
    latency = client.application.extensions["metrics"].registry.get_sample_value(
        "http_request_duration_seconds_count", {"route": "/api/movies", "method": "GET"})
    assert latency == 2


def test_the_gateway_s_own_routes_are_counted_too(client):
    assert client.get("/health").status_code in (200, 503)
    assert client.post("/api/billing", json={"user_id": 1}).status_code == 400
    assert client.get("/no/such/path").status_code == 404
    assert client.open("/api/billing", method="BREW").status_code == 405
    assert counted(client, "/api/billing", "POST", 400) == 1
    assert counted(client, "unmatched", "GET", 404) == 1
    # A method no route takes matched no rule either.
    assert counted(client, "unmatched", "other", 405) == 1
    health = sum(counted(client, "/health", "GET", status) for status in (200, 503))
    assert health == 1


@pytest.mark.parametrize(("path", "route"), [
    ("/api/movies", "/api/movies"), ("/api/movies/", "/api/movies"), ("/api/movies/42", "/api/movies/<movie_id>"),
    ("/api/movies/42/", "/api/movies/<movie_id>"), ("/api/movies/42/x", None), ("/api/moviesX", None),
    ("/api/movies42", None), ("/api/movies-x/", None),
    ("/health", None), ("/", None),
])
def test_a_path_is_counted_under_the_inventory_s_route_or_none(path, route):
    # The front counts its reads by route_of too: a path it did not expect is never taken for the catalog's.
    assert route_of(path) == route
