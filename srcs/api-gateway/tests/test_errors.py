"""The gateway's own errors: always the shared JSON shape, never HTML, never a trace."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/", "/nope", "/api", "/api/movie", "/api/billing/extra", "/health/x"])
def test_unknown_paths_are_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "not_found",
        "message": f"no resource at {path}",
        "request_id": response.headers["X-Request-ID"],
    }


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/api/billing/", "POST"), ("PUT", "/api/billing", "POST"), ("POST", "/health", "GET"),
     ("DELETE", "/openapi.yaml", "GET"), ("POST", "/docs", "GET")],
)
def test_wrong_methods_on_gateway_paths_are_405_json_with_allow(client, method, path, allowed):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert allowed in response.headers["Allow"].split(", ")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("TRACE", "/api/movies", "GET, HEAD, POST, DELETE, OPTIONS"), ("CONNECT", "/api/movies/", "GET, HEAD, POST, DELETE, OPTIONS"),
     ("TRACE", "/api/movies/7", "GET, HEAD, PUT, DELETE, OPTIONS"), ("BREW", "/api/movies/7/", "GET, HEAD, PUT, DELETE, OPTIONS")],
)
def test_methods_the_gateway_never_forwards_are_405_with_the_path_s_own_allow(client, method, path, allowed):
    # The Allow the inventory itself would give: only the methods that path really serves.
    response = client.open(path, method=method)
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"
    assert response.headers["Allow"] == allowed


@pytest.mark.parametrize("path", ["//api/movies", "//api/billing", "//health", "/api//billing", "//docs"])
def test_doubled_slashes_are_a_json_404_never_a_redirect(client, path):
    response = client.open(path, method="POST" if "billing" in path else "GET")
    assert response.status_code == 404 and "Location" not in response.headers
    assert response.get_json()["error"] == "not_found"


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/billing?x=1"), ("GET", "/health?verbose=1"),
                                              ("GET", "/openapi.yaml?x"), ("GET", "/docs/?a=b")])
def test_the_gateway_s_own_routes_refuse_query_parameters(client, amqp, config, method, path):
    response = client.open(path, method=method, json={"user_id": 1, "number_of_items": 1, "total_amount": 1})
    assert response.status_code == 400
    assert response.get_json()["details"][0]["reason"].startswith("unknown parameter")
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 0


def test_an_error_names_a_few_fields_and_stays_small(client):
    # 64 KiB of unknown fields: five named, the rest counted, instead of an answer ten times the body's size.
    order = {"user_id": 1, "number_of_items": 1, "total_amount": 1, **{f"f{n:05d}" + "x" * 40: 1 for n in range(1000)}}
    response = client.post("/api/billing", json=order)
    assert response.status_code == 400
    details = response.get_json()["details"]
    assert len(details) == 5 and "995 more" in details[-1]["reason"]
    assert len(response.data) < 2000


def test_headers_the_inventory_would_refuse_are_refused_by_the_gateway_with_its_request_id(client, clean_movies):
    # 97 headers reach the gateway fine; forwarded, with Host, X-Request-ID and X-Forwarded-For, they would be over
    # the inventory's 100: the gateway answers 431 itself, and the body's request id is the header's.
    many = {f"X-Extra-{n}": "1" for n in range(97)}
    response = client.get("/api/movies", headers={**many, "X-Request-ID": "many-headers"})
    assert response.status_code == 431
    assert response.get_json()["error"] == "request_header_fields_too_large"
    assert response.get_json()["request_id"] == response.headers["X-Request-ID"] == "many-headers"
    # A long X-Forwarded-For grows by the client's address on the way: over the field limit once forwarded.
    forwarded = client.get("/api/movies", headers={"X-Forwarded-For": "1" * 8170})
    assert forwarded.status_code == 431 and forwarded.get_json()["request_id"] == forwarded.headers["X-Request-ID"]
    # Just within the limits: forwarded, and answered by the inventory.
    assert client.get("/api/movies", headers={f"X-Extra-{n}": "1" for n in range(90)}).status_code == 200
    assert client.get("/api/movies", headers={"X-Forwarded-For": "1" * 8000}).status_code == 200


def test_unexpected_failures_are_500_json_without_a_trace(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "internal_error" and "secret" not in body["message"]
    assert "secret internals" in caplog.text  # the log has it, with the request id's line


def test_access_log_names_method_path_status_duration_request_id_and_upstream(client, caplog, clean_movies):
    caplog.set_level("INFO", logger="gateway.access")
    client.get("/api/movies?limit=1", headers={"X-Request-ID": "log-check-1"})
    client.post("/api/billing", data=b"x", content_type="text/plain", headers={"X-Request-ID": "log-check-2"})
    client.get("/nope", headers={"X-Request-ID": "log-check-3"})
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert any(line.startswith("GET /api/movies?limit=1 200 ") and "request_id=log-check-1 upstream=inventory" in line
               for line in lines), lines
    assert any(line.startswith("POST /api/billing 415 ") and "request_id=log-check-2 upstream=-" in line
               for line in lines), lines
    assert any(line.startswith("GET /nope 404 ") and line.endswith("request_id=log-check-3 upstream=-")
               for line in lines), lines
    assert all(" ms " not in line and "ms request_id=" in line for line in lines)


