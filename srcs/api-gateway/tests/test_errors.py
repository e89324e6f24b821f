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
     ("DELETE", "/openapi.yaml", "GET"), ("POST", "/docs", "GET"), ("TRACE", "/api/movies", "GET")],
)
def test_wrong_methods_on_gateway_paths_are_405_json_with_allow(client, method, path, allowed):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert allowed in response.headers["Allow"].split(", ")


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


def test_made_request_ids_are_unique_within_and_across_forked_processes():
    import os

    from app.observability import new_request_id

    made = [new_request_id() for _ in range(1000)]
    assert len(set(made)) == 1000 and all(len(rid) == 32 for rid in made)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # as a gunicorn worker is forked from the master that imported the app
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    in_child = os.read(reader, 64).decode()
    assert in_child[:16] != new_request_id()[:16]
