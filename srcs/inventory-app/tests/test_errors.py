"""Bad input of every kind: a 4xx in the shared JSON shape naming the field and the reason, never a 500."""

from __future__ import annotations

import pytest


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if field is not None:
        assert field in [d["field"] for d in body["details"]], body
    return body


@pytest.mark.parametrize(
    ("body", "field", "reason_part"),
    [
        ({}, "title", "required"),
        ({"title": ""}, "title", "at least 1"),
        ({"title": " \t\n"}, "title", "other than whitespace"),
        ({"title": "x" * 201}, "title", "at most 200"),
        ({"title": 42}, "title", "string"),
        ({"title": None}, "title", "string"),
        ({"title": ["a"]}, "title", "string"),
        ({"title": "ok", "description": 7}, "description", "string"),
        ({"title": "ok", "description": "d" * 5001}, "description", "at most 5000"),
        ({"title": "ok", "rating": 5}, "rating", "unknown field"),
        ({"title": "ok", "id": 9}, "id", "unknown field"),
    ],
)
def test_create_rejects_bad_fields(client, body, field, reason_part):
    error = assert_error(client.post("/api/movies", json=body), 400, "validation_error", field)
    reason = next(d["reason"] for d in error["details"] if d["field"] == field)
    assert reason_part in reason.lower()


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body"), ({"title": None}, "title"), ({"description": None}, "description"), ({"title": 1}, "title"),
     ({"year": 1999}, "year")],
)
def test_update_rejects_bad_fields(client, make_movie, body, field):
    movie = make_movie("Fargo")
    assert_error(client.put(f"/api/movies/{movie['id']}", json=body), 400, "validation_error", field)
    assert client.get(f"/api/movies/{movie['id']}").get_json() == movie


@pytest.mark.parametrize("method", ["post", "put"])
@pytest.mark.parametrize(
    ("data", "message_part"),
    [(b"{not json", "not valid JSON"), (b"", "not valid JSON"), (b"\xff\xfe\x00", "not valid JSON"),
     (b"[1, 2]", "JSON object"), (b'"title"', "JSON object"), (b"null", "JSON object"),
     (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"), (b'{"title": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                                             "nested too deeply")],
)
def test_malformed_bodies_are_400(client, make_movie, method, data, message_part):
    url = "/api/movies" if method == "post" else f"/api/movies/{make_movie('Up')['id']}"
    response = getattr(client, method)(url, data=data, content_type="application/json")
    body = assert_error(response, 400, "bad_request", "body")
    assert message_part in body["message"]


@pytest.mark.parametrize("body", [{"title": "a\u0000b"}, {"title": "ok", "description": "\u0000"}])
def test_nul_characters_are_400_not_a_database_error(client, body):
    field = "title" if "\u0000" in body["title"] else "description"
    error = assert_error(client.post("/api/movies", json=body), 400, "validation_error", field)
    assert "NUL" in error["message"]
    assert client.get("/api/movies").get_json() == []


def test_a_nul_in_the_title_search_is_400(client):
    assert_error(client.get("/api/movies?title=%00"), 400, "validation_error", "title")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post("/api/movies", data='{"title": "x"}', **kwargs)
    assert_error(response, 415, "unsupported_media_type", "Content-Type")


def test_json_with_a_charset_is_accepted(client):
    response = client.post("/api/movies", data='{"title": "x"}', content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(client):
    response = client.post("/api/movies", json={"title": "big", "description": "x" * 70_000})
    assert_error(response, 413, "payload_too_large", "body")
    assert client.get("/api/movies").get_json() == []


@pytest.mark.parametrize("raw_id", ["0", "-1", "abc", "1.5", "01", "9223372036854775808", "99999999999999999999"])
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_ids_that_are_not_positive_integers_are_400(client, method, raw_id):
    kwargs = {"json": {"title": "x"}} if method == "put" else {}
    response = getattr(client, method)(f"/api/movies/{raw_id}", **kwargs)
    assert_error(response, 400, "validation_error", "id")


def test_the_largest_bigint_id_is_a_plain_404(client):
    assert_error(client.get("/api/movies/9223372036854775807"), 404, "not_found")


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("limit=-5", "limit"), ("after=-1", "after"),
     ("after=x", "after"), ("title=" + "t" * 201, "title"), ("sort=title", "sort")],
)
def test_bad_list_parameters_are_400(client, query, field):
    assert_error(client.get(f"/api/movies?{query}"), 400, "validation_error", field)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("patch", "/api/movies", {"GET", "POST", "DELETE"}), ("post", "/api/movies/1", {"GET", "PUT", "DELETE"}),
     ("put", "/api/movies/", {"GET", "POST", "DELETE"}), ("post", "/health", {"GET"})],
)
def test_wrong_method_is_405_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("path", ["/", "/api", "/api/movie", "/api/movies/1/extra", "/static/x.css"])
def test_unknown_paths_are_404_json(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_request_id_is_taken_from_the_client_or_made(client):
    response = client.get("/api/movies", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    made = client.get("/api/movies", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert made != "bad id <script>" and len(made) == 32


def test_each_request_logs_one_access_line(client, caplog):
    caplog.set_level("INFO", logger="inventory.access")
    client.get("/api/movies/77", headers={"X-Request-ID": "trace-77"})
    lines = [r.getMessage() for r in caplog.records if r.name == "inventory.access"]
    assert len(lines) == 1
    method, path, status, duration, request_id = lines[0].split(" ")
    assert (method, path, status, request_id) == ("GET", "/api/movies/77", "404", "request_id=trace-77")
    assert duration.endswith("ms") and float(duration[:-2]) >= 0


@pytest.mark.parametrize(
    "query",
    ["limit=5.0", "limit=+5", "limit=1_0", "limit=%205", "limit=", "after=1e3", "after=0x10",
     "limit=5&limit=6", "title=a&title=b", "after=1&after=2"],
)
def test_list_parameters_are_parsed_strictly(client, query):
    field = query.split("=", 1)[0]
    assert_error(client.get(f"/api/movies?{query}"), 400, "validation_error", field)


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/movies?x=1"), ("get", "/api/movies/1?x=1"), ("put", "/api/movies/1?x=1"),
     ("delete", "/api/movies/1?x=1"), ("delete", "/api/movies?title=x")],
)
def test_unknown_query_parameters_are_400(client, make_movie, method, path):
    make_movie("Only")
    kwargs = {"json": {"title": "x"}} if method in ("post", "put") else {}
    assert_error(getattr(client, method)(path, **kwargs), 400, "validation_error", "x" if "x=1" in path else "title")
    assert [m["title"] for m in client.get("/api/movies").get_json()] == ["Only"]


@pytest.mark.parametrize("path", ["//api/movies", "/api/movies//1", "//api//movies/", "/api/movies//"])
def test_doubled_slashes_are_404_json_never_a_redirect(client, make_movie, path):
    make_movie("One")
    response = client.get(path)
    assert response.status_code == 404 and "Location" not in response.headers
    assert_error(response, 404, "not_found")


def test_a_lone_surrogate_is_400_not_a_database_error(client):
    response = client.post("/api/movies", data=b'{"title": "a\\ud800b"}', content_type="application/json")
    assert_error(response, 400, "validation_error", "title")
    assert client.get("/api/movies").get_json() == []


def test_an_error_names_a_few_fields_and_stays_small(client):
    # 64 KiB of unknown fields: the answer names five and says how many more, instead of echoing them all.
    body = {"title": "ok", **{f"field_{n:05d}_" + "x" * 40: 1 for n in range(1000)}}
    response = client.post("/api/movies", json=body)
    error = assert_error(response, 400, "validation_error")
    assert len(error["details"]) == 5
    assert "995 more" in error["details"][-1]["reason"]
    assert len(response.data) < 2000


def test_an_echoed_value_is_cut_short(client):
    error = assert_error(client.get("/api/movies/" + "9" * 3000), 400, "validation_error", "id")
    assert len(error["message"]) < 200


@pytest.mark.parametrize("term", ["ab", "!!", "%%%", "a b c", "a-b-c", "東京都", "é" * 10, "__"])
def test_a_title_term_the_index_cannot_help_with_is_400(client, term):
    error = assert_error(client.get("/api/movies", query_string={"title": term}), 400, "validation_error", "title")
    assert "at least 3 letters or digits in a row" in error["message"]


@pytest.mark.parametrize("term", ["god", "Amélie", "x-men", "100%", "GODFATHER"])
def test_a_title_term_with_three_letters_or_digits_in_a_row_is_searched(client, term):
    assert client.get("/api/movies", query_string={"title": term}).status_code == 200


def test_a_statement_over_the_timeout_is_cancelled_and_a_503(config, migrated_database, admin_engine):
    # A lock held elsewhere keeps the statement waiting: PostgreSQL cancels it at the timeout, and the client
    # gets a 503 in the error shape instead of a request hanging for as long as the lock stays.
    import dataclasses

    from sqlalchemy import text

    from app import create_app

    app = create_app(dataclasses.replace(config, db_statement_timeout_ms=300))
    with admin_engine.connect() as locker:
        locker.execute(text("LOCK TABLE movies IN ACCESS EXCLUSIVE MODE"))
        response = app.test_client().get("/api/movies/1")
        locker.rollback()
    app.extensions["database"].engine.dispose()
    assert_error(response, 503, "service_unavailable")
    # Counted as what it was, for an operator to tell a slow database from a dead one.
    registry = app.extensions["metrics"].registry
    assert registry.get_sample_value("inventory_database_errors_total", {"kind": "statement_timeout"}) == 1
    assert registry.get_sample_value("inventory_database_errors_total", {"kind": "unavailable"}) == 0


@pytest.mark.parametrize("query", [{"title": "the the", "limit": "20"}, {"title": "the the"}], ids=["page", "list"])
def test_a_search_over_its_own_timeout_is_a_400_naming_the_title(config, migrated_database, admin_engine, query):
    # A search gets a shorter bound than other statements: the lock keeps it waiting, as a term the trigram index
    # cannot narrow down keeps it scanning; it is refused, the client told what to change, and the connection
    # goes back to the pool with its usual timeout.
    import dataclasses

    from sqlalchemy import text

    from app import create_app

    app = create_app(dataclasses.replace(config, db_statement_timeout_ms=5000, db_search_timeout_ms=100))
    with admin_engine.connect() as locker:
        locker.execute(text("LOCK TABLE movies IN ACCESS EXCLUSIVE MODE"))
        response = app.test_client().get("/api/movies", query_string=query)
        locker.rollback()
    assert_error(response, 400, "validation_error")
    assert response.get_json()["details"][0]["field"] == "title"
    with app.extensions["database"].engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"
    app.extensions["database"].engine.dispose()
