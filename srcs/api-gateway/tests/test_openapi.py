"""The gateway's answers are what openapi.yaml says: each response below is validated by openapi-core
(status documented for the operation, body schema, headers), and the document itself is valid OpenAPI 3."""

from __future__ import annotations

import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from werkzeug.test import EnvironBuilder

from .fake_upstreams import FakeUpstream, reset, slow
from .support import REPO_ROOT


@pytest.fixture(scope="module")
def document() -> dict:
    with open(REPO_ROOT / "openapi.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def openapi(document: dict) -> OpenAPI:
    # The test client talks to http://localhost; the documented servers are the deployed addresses.
    return OpenAPI.from_dict({**document, "servers": [{"url": "http://localhost"}]})


@pytest.fixture
def check(openapi: OpenAPI):
    def check(response):
        # The request as routed (method, path, query): its body was consumed by the gateway already.
        sent = response.request
        request = EnvironBuilder(
            path=sent.path, method=sent.method, query_string=sent.query_string.decode(), base_url="http://localhost"
        ).get_request()
        openapi.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
        return response

    return check


def test_the_document_is_valid_openapi(document):
    validate(document)
    assert {"/api/movies", "/api/movies/{id}", "/api/billing", "/health", "/openapi.yaml", "/docs"} <= set(
        document["paths"]
    )


def test_movie_answers_match_the_document(client, check, clean_movies):
    created = check(client.post("/api/movies", json={"title": "Heat", "description": "1995"}))
    assert created.status_code == 200
    movie_id = created.get_json()["id"]
    check(client.post("/api/movies", json={"title": "Heat 2"}))
    assert check(client.get("/api/movies?limit=1")).headers["Link"]
    check(client.get("/api/movies?title=heat&after=0"))
    check(client.get("/api/movies"))
    check(client.get(f"/api/movies/{movie_id}"))
    check(client.put(f"/api/movies/{movie_id}", json={"description": "Mann"}))
    check(client.delete(f"/api/movies/{movie_id}"))
    for response in (
        client.get(f"/api/movies/{movie_id}"),
        client.get("/api/movies/abc"),
        client.get("/api/movies?limit=1000"),
        client.get("/api/movies?limit=5.0"),
        client.delete("/api/movies?title=x"),
        client.post("/api/movies", json={"title": ""}),
        client.post("/api/movies", data=b"x", content_type="text/plain"),
        client.post("/api/movies", data=b"{" * 70_000, content_type="application/json"),
        client.put(f"/api/movies/{movie_id}", json={"title": "x"}),
        client.delete(f"/api/movies/{movie_id}"),
    ):
        assert response.status_code in (400, 404, 413, 415)
        check(response)
    check(client.delete("/api/movies"))


def test_upstream_failure_answers_match_the_document(make_client, check):
    with FakeUpstream(slow(2)) as upstream:
        assert check(make_client(inventory_url=upstream.url, inventory_read_timeout_s=0.2).get("/api/movies")).status_code == 504
    with FakeUpstream(reset) as upstream:
        assert check(make_client(inventory_url=upstream.url).get("/api/movies/1")).status_code == 502
    stopped = make_client(inventory_url=upstream.url)
    assert check(stopped.delete("/api/movies/1")).status_code == 502
    health = check(stopped.get("/health"))
    assert health.status_code == 503
    assert health.get_json()["error"] == "service_unavailable" and "inventory" in health.get_json()["message"]


def test_billing_answers_match_the_document(client, amqp, check, config):
    assert check(client.post("/api/billing", json={"user_id": 1, "number_of_items": 2, "total_amount": 3})).status_code == 200
    for response in (
        client.post("/api/billing", json={"user_id": -1, "number_of_items": 2, "total_amount": 3}),
        client.post("/api/billing", data=b"[]", content_type="application/json"),
        client.post("/api/billing", data=b"x", content_type="text/plain"),
        client.post("/api/billing", data=b" " * 70_000, content_type="application/json"),
    ):
        check(response)


def test_billing_503_matches_the_document(make_client, check, config):
    # A broker that is not there (a closed port) stands for a broker that is down.
    from crud_common.testing import free_port

    response = check(make_client(rabbitmq={"port": free_port()}, amqp_timeout_s=1).post(
        "/api/billing", json={"user_id": 1, "number_of_items": 2, "total_amount": 3}
    ))
    assert response.status_code == 503


def test_operational_answers_match_the_document(client, check):
    assert check(client.get("/health")).status_code == 200
    assert check(client.get("/openapi.yaml")).status_code == 200
    assert check(client.get("/docs")).status_code == 200


def test_only_the_operations_that_exist_are_documented(document):
    # A wrong method's 405 is behaviour of its own (tests/test_errors.py), not an operation.
    operations = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")}
    assert operations == {
        ("/api/movies", "get"), ("/api/movies", "post"), ("/api/movies", "delete"),
        ("/api/movies/{id}", "get"), ("/api/movies/{id}", "put"), ("/api/movies/{id}", "delete"),
        ("/api/billing", "post"), ("/health", "get"), ("/openapi.yaml", "get"), ("/docs", "get"),
    }
    for path, method in operations:
        responses = document["paths"][path][method]["responses"]
        assert {"414", "431"} <= set(responses), (path, method)  # the HTTP server's own refusals, on every one
