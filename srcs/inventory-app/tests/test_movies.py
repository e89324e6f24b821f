"""The movies API, endpoint by endpoint, against the real test database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.routes import STREAM_BATCH

AUDIT_MOVIE = {"title": "A new movie", "description": "Very short description"}


def test_create_returns_200_with_the_movie_and_its_location(client):
    # 200, the audit's code (its latest revision calls 201 a typo).
    response = client.post("/api/movies/", json=AUDIT_MOVIE)
    assert response.status_code == 200
    movie = response.get_json()
    assert movie == {"id": movie["id"], **AUDIT_MOVIE}
    assert isinstance(movie["id"], int) and movie["id"] > 0
    assert response.headers["Location"] == f"/api/movies/{movie['id']}"
    assert response.content_type == "application/json"


def test_create_without_description_stores_an_empty_one(client):
    response = client.post("/api/movies", json={"title": "Solaris"})
    assert response.status_code == 200
    assert response.get_json()["description"] == ""


def test_created_movie_can_be_read_back(client, make_movie):
    movie = make_movie("Stalker", "A zone")
    response = client.get(f"/api/movies/{movie['id']}")
    assert response.status_code == 200
    assert response.get_json() == movie


def test_title_is_stored_as_sent_and_unicode_kept(client):
    # Exactly what openapi.yaml allows: 1 to 200 characters as sent, surrounding spaces included.
    response = client.post("/api/movies", json={"title": "  Amélie 東京  "})
    assert response.status_code == 200
    assert response.get_json()["title"] == "  Amélie 東京  "
    assert "Amélie 東京".encode() in response.data  # not \u-escaped


@pytest.mark.parametrize("suffix", ["", "/"])
def test_every_route_works_with_and_without_trailing_slash(client, make_movie, suffix):
    movie = make_movie("Heat")
    assert client.get(f"/api/movies{suffix}").status_code == 200
    assert client.post(f"/api/movies{suffix}", json={"title": "Ronin"}).status_code == 200
    assert client.get(f"/api/movies/{movie['id']}{suffix}").status_code == 200
    assert client.put(f"/api/movies/{movie['id']}{suffix}", json={"title": "Heat (1995)"}).status_code == 200
    assert client.delete(f"/api/movies/{movie['id']}{suffix}").status_code == 204
    assert client.delete(f"/api/movies{suffix}").get_json() == {"deleted": 1}


def test_list_returns_every_movie_in_id_order(client, make_movie):
    made = [make_movie(f"Movie {n}") for n in range(3)]
    response = client.get("/api/movies")
    assert response.status_code == 200
    assert response.get_json() == made
    assert "Link" not in response.headers


def test_list_of_an_empty_inventory_is_an_empty_array(client):
    response = client.get("/api/movies")
    assert response.status_code == 200
    assert response.get_json() == []


def test_title_filter_is_a_case_insensitive_substring_match(client, make_movie):
    make_movie("The Godfather")
    make_movie("Godzilla")
    make_movie("Alien")
    make_movie("GODS and monsters")
    titles = [m["title"] for m in client.get("/api/movies?title=god").get_json()]
    assert titles == ["The Godfather", "Godzilla", "GODS and monsters"]


def test_title_filter_treats_like_wildcards_literally(client, make_movie):
    make_movie("100% Wolf")
    make_movie("1000 Wolves")
    make_movie("snake_case")
    make_movie("snakeXcase")
    assert [m["title"] for m in client.get("/api/movies?title=100%25").get_json()] == ["100% Wolf"]
    assert [m["title"] for m in client.get("/api/movies?title=ake_cas").get_json()] == ["snake_case"]


def test_empty_title_filter_keeps_everything(client, make_movie):
    make_movie("One")
    make_movie("Two")
    assert len(client.get("/api/movies?title=").get_json()) == 2


def test_pagination_walks_every_page_through_the_link_header(client, make_movie):
    made = [make_movie(f"Film {n:02d}") for n in range(7)]
    seen, url, pages = [], "/api/movies?limit=3", 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen.extend(response.get_json())
        pages += 1
        link = response.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")] if link else None
        if link:
            assert link.endswith('rel="next"')
    assert pages == 3
    assert seen == made


def test_pagination_keeps_the_title_filter_and_the_path(client, make_movie):
    for n in range(5):
        make_movie(f"Alien {n}")
        make_movie(f"Other {n}")
    response = client.get("/api/movies/?title=alien&limit=2")
    assert [m["title"] for m in response.get_json()] == ["Alien 0", "Alien 1"]
    link = response.headers["Link"]
    assert link.startswith("</api/movies/?")
    next_url = link[1 : link.index(">")]
    assert "title=alien" in next_url
    assert [m["title"] for m in client.get(next_url).get_json()] == ["Alien 2", "Alien 3"]


def test_a_page_has_no_link_when_it_is_the_exact_last_one(client, make_movie):
    for n in range(4):
        make_movie(f"M{n}")
    response = client.get("/api/movies?limit=4")
    assert len(response.get_json()) == 4
    assert "Link" not in response.headers
    make_movie("M4")
    response = client.get("/api/movies?limit=4")
    assert len(response.get_json()) == 4
    assert "after=4" in response.headers["Link"]


def test_limit_of_100_is_the_maximum(client):
    assert client.get("/api/movies?limit=100").status_code == 200
    response = client.get("/api/movies?limit=101")
    assert response.status_code == 400
    assert response.get_json()["details"][0]["field"] == "limit"


def test_put_updates_only_the_fields_given(client, make_movie):
    movie = make_movie("Brazil", "Gilliam")
    response = client.put(f"/api/movies/{movie['id']}", json={"description": "Terry Gilliam, 1985"})
    assert response.status_code == 200
    assert response.get_json() == {"id": movie["id"], "title": "Brazil", "description": "Terry Gilliam, 1985"}
    response = client.put(f"/api/movies/{movie['id']}", json={"title": "Brazil (1985)"})
    assert response.get_json()["description"] == "Terry Gilliam, 1985"
    assert client.get(f"/api/movies/{movie['id']}").get_json()["title"] == "Brazil (1985)"


def test_delete_one_removes_it_and_a_second_delete_is_404(client, make_movie):
    movie = make_movie("Gone")
    kept = make_movie("Kept")
    response = client.delete(f"/api/movies/{movie['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers  # no body, so no type
    assert client.get(f"/api/movies/{movie['id']}").status_code == 404
    assert client.delete(f"/api/movies/{movie['id']}").status_code == 404
    assert client.get("/api/movies").get_json() == [kept]


def test_delete_all_says_how_many_and_empties_the_inventory(client, make_movie):
    for n in range(4):
        make_movie(f"X{n}")
    response = client.delete("/api/movies")
    assert response.status_code == 200
    assert response.get_json() == {"deleted": 4}
    assert client.get("/api/movies").get_json() == []
    assert client.delete("/api/movies").get_json() == {"deleted": 0}


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_unknown_id_is_404_in_the_error_shape(client, method):
    kwargs = {"json": {"title": "x"}} if method == "put" else {}
    response = getattr(client, method)("/api/movies/424242", **kwargs)
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"] == "not_found"
    assert body["message"] == "movie 424242 does not exist"
    assert body["request_id"] == response.headers["X-Request-ID"]


def insert_movies(admin_engine, count: int, title: str = "Movie") -> None:
    """`count` movies straight into the table (far faster than through the API)."""
    with admin_engine.begin() as connection:
        connection.execute(
            text("INSERT INTO movies (title, description) SELECT :title || ' ' || n, 'd' || n "
                 "FROM generate_series(1, :count) AS n"),
            {"title": title, "count": count},
        )


def test_without_limit_the_list_is_every_movie_however_many(client, admin_engine):
    # More than a page, more than one batch of the stream: the audit's GET must show the movie just added.
    insert_movies(admin_engine, 2 * STREAM_BATCH + 5)
    added = client.post("/api/movies/", json={"title": "A new movie", "description": "Very short description"})
    response = client.get("/api/movies/")
    assert response.status_code == 200
    assert "Content-Length" not in response.headers and response.content_type == "application/json"
    listed = response.get_json()
    assert len(listed) == 2 * STREAM_BATCH + 6
    assert listed[-1] == added.get_json()
    assert [movie["id"] for movie in listed] == list(range(1, 2 * STREAM_BATCH + 7))
    assert "Link" not in response.headers


def test_a_streamed_list_is_counted_once_it_has_been_sent_whole(client, admin_engine, caplog):
    # Its time is the whole answer's, not the first batch's: counted and logged when the server closes it.
    insert_movies(admin_engine, 2 * STREAM_BATCH + 5)
    registry = client.application.extensions["metrics"].registry
    series = {"route": "/api/movies", "method": "GET", "status": "200"}
    with caplog.at_level("INFO", logger="inventory.access"):
        response = client.get("/api/movies")
        assert registry.get_sample_value("http_requests_total", series) is None
        assert not [r for r in caplog.records if r.name == "inventory.access"]
        assert len(response.get_json()) == 2 * STREAM_BATCH + 5
        response.close()
    assert registry.get_sample_value("http_requests_total", series) == 1
    assert len([r for r in caplog.records if r.name == "inventory.access"]) == 1


def test_a_short_list_is_one_plain_answer(client, make_movie):
    made = [make_movie(f"Film {n}") for n in range(3)]
    response = client.get("/api/movies")
    assert response.headers["Content-Length"] == str(len(response.data))
    assert response.get_json() == made


def test_the_title_filter_spans_every_batch_of_the_stream(client, admin_engine):
    insert_movies(admin_engine, STREAM_BATCH * 3, "Noise")
    insert_movies(admin_engine, STREAM_BATCH + 1, "Signal")
    insert_movies(admin_engine, 10, "Noise")
    listed = client.get("/api/movies?title=sig").get_json()
    assert len(listed) == STREAM_BATCH + 1
    assert all(movie["title"].startswith("Signal ") for movie in listed)
    assert listed == sorted(listed, key=lambda movie: movie["id"])


def test_after_without_limit_is_every_movie_after_that_id(client, make_movie):
    made = [make_movie(f"Film {n}") for n in range(5)]
    assert client.get(f"/api/movies?after={made[1]['id']}").get_json() == made[2:]


def test_the_streamed_json_is_the_api_s_json_byte_for_byte(client, make_movie):
    # PostgreSQL writes the list's objects (row_to_json): same keys, order, escapes and unicode as Flask's.
    make_movie("Quotes \" and \\ backslash, tab\t, bell\u0007", "Amélie 東京 \u2028 \U0001f3ac")
    movie = client.get("/api/movies/1")
    listed = client.get("/api/movies")
    assert listed.data == b"[" + movie.data.rstrip(b"\n") + b"]\n"


def test_delete_all_with_a_query_parameter_deletes_nothing(client, make_movie):
    make_movie("Kept")
    response = client.delete("/api/movies?title=x")
    assert response.status_code == 400
    assert response.get_json()["details"] == [
        {"field": "title", "reason": "unknown parameter: this request takes no query parameter"}]
    assert len(client.get("/api/movies").get_json()) == 1
