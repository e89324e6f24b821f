"""Every proxied method and path answers the same through the gateway as from the inventory directly:
status, body, Content-Type, Location, Link, Allow, including errors, pagination and trailing slashes."""

from __future__ import annotations

import re

import pytest
import requests

COMPARED_HEADERS = ("Content-Type", "Location", "Link", "Allow")


def both(client, inventory, method: str, path: str, **kwargs):
    """The same request to the inventory directly and through the gateway, with the same request id
    (error bodies carry it, so identical ids make identical bodies)."""
    headers = {"X-Request-ID": "parity-check", **kwargs.pop("headers", {})}
    direct = requests.request(method, inventory.url + path, headers=headers, timeout=10, **kwargs)
    via = client.open(path, method=method, headers=headers, **kwargs)
    return direct, via


def assert_same(direct: requests.Response, via) -> None:
    assert via.status_code == direct.status_code, via.data
    assert via.data == direct.content
    for name in COMPARED_HEADERS:
        assert via.headers.get(name) == direct.headers.get(name), name
    assert via.headers["X-Request-ID"] == "parity-check"


@pytest.fixture
def seeded(clean_movies, inventory) -> list[dict]:
    movies = []
    for title in ("Alien", "Aliens", "Blade Runner", "Café Society", "Heat"):
        response = requests.post(f"{inventory.url}/api/movies", json={"title": title, "description": "d"}, timeout=10)
        assert response.status_code == 200
        movies.append(response.json())
    return movies


READS_AND_ERRORS = [
    ("GET", "/api/movies", {}),
    ("GET", "/api/movies/", {}),
    ("GET", "/api/movies?limit=2", {}),
    ("GET", "/api/movies/?limit=2&title=ali", {}),
    ("GET", "/api/movies?title=caf%C3%A9", {}),
    ("GET", "/api/movies?title=%00", {}),
    ("GET", "/api/movies?title=no+such+movie", {}),
    ("GET", "/api/movies?limit=0", {}),
    ("GET", "/api/movies?limit=abc", {}),
    ("GET", "/api/movies?unknown=1", {}),
    ("GET", "/api/movies/{first}", {}),
    ("GET", "/api/movies/{first}/", {}),
    ("GET", "/api/movies/999999999", {}),
    ("GET", "/api/movies/abc", {}),
    ("GET", "/api/movies/-1", {}),
    ("GET", "/api/movies/{first}/extra", {}),
    ("HEAD", "/api/movies", {}),
    ("HEAD", "/api/movies/{first}", {}),
    ("OPTIONS", "/api/movies", {}),
    ("OPTIONS", "/api/movies/{first}", {}),
    ("PATCH", "/api/movies/{first}", {"json": {"title": "x"}}),
    ("POST", "/api/movies/{first}", {"json": {"title": "x"}}),
    ("POST", "/api/movies", {"data": b"{", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/api/movies/", {"data": b"title=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST", "/api/movies", {"json": []}),
    ("POST", "/api/movies", {"json": {"title": ""}}),
    ("POST", "/api/movies", {"json": {"title": 5}}),
    ("POST", "/api/movies", {"json": {"title": "x", "rating": 5}}),
    ("POST", "/api/movies", {"data": b'{"title": "' + b"x" * 70_000 + b'"}',
                             "headers": {"Content-Type": "application/json"}}),
    ("PUT", "/api/movies/999999999", {"json": {"title": "x"}}),
    ("PUT", "/api/movies/{first}", {"json": {}}),
    ("PUT", "/api/movies/{first}/", {"json": {"title": None}}),
    ("PUT", "/api/movies/{first}", {"data": b"x", "headers": {"Content-Type": "text/plain"}}),
    ("DELETE", "/api/movies/999999999", {}),
    ("DELETE", "/api/movies/999999999/", {}),
    ("DELETE", "/api/movies/abc", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), READS_AND_ERRORS, ids=[f"{m} {p}" for m, p, _ in READS_AND_ERRORS])
def test_reads_and_errors_are_identical(client, inventory, seeded, method, path, kwargs):
    direct, via = both(client, inventory, method, path.format(first=seeded[0]["id"]), **kwargs)
    assert_same(direct, via)
    if method == "HEAD":
        assert via.headers["Content-Length"] == direct.headers["Content-Length"]


def test_pagination_walk_is_identical(client, inventory, seeded):
    def walk(fetch) -> list[tuple[list, str | None]]:
        pages, url = [], "/api/movies/?limit=2"
        while url:
            body, link = fetch(url)
            pages.append((body, link))
            match = re.fullmatch(r'<([^>]+)>; rel="next"', link) if link else None
            url = match.group(1) if match else None
        return pages

    direct = walk(lambda url: (lambda r: (r.json(), r.headers.get("Link")))(requests.get(inventory.url + url, timeout=10)))
    via = walk(lambda url: (lambda r: (r.get_json(), r.headers.get("Link")))(client.get(url)))
    assert via == direct
    assert [movie for body, _ in via for movie in body] == seeded
    assert len(via) == 3


def _without_ids(body: bytes, *ids: int) -> bytes:
    for movie_id in ids:
        body = body.replace(str(movie_id).encode(), b"<id>")
    return body


def test_writes_answer_the_same(client, inventory, clean_movies):
    movie = {"title": "A new movie", "description": "Very short description"}
    direct, via = both(client, inventory, "POST", "/api/movies/", json=movie)
    assert (via.status_code, direct.status_code) == (200, 200)
    direct_id, via_id = direct.json()["id"], via.get_json()["id"]
    assert via.get_json() == {**movie, "id": via_id}
    assert _without_ids(via.data, via_id) == _without_ids(direct.content, direct_id)
    assert via.headers["Location"] == f"/api/movies/{via_id}"
    assert via.headers["Content-Type"] == direct.headers["Content-Type"]

    # The gateway's write is the inventory's state.
    assert requests.get(f"{inventory.url}/api/movies/{via_id}", timeout=10).json() == via.get_json()

    put_direct = requests.put(f"{inventory.url}/api/movies/{direct_id}", json={"title": "Renamed"}, timeout=10)
    put_via = client.put(f"/api/movies/{via_id}/", json={"title": "Renamed"})
    assert put_via.status_code == put_direct.status_code == 200
    assert _without_ids(put_via.data, via_id) == _without_ids(put_direct.content, direct_id)
    assert requests.get(f"{inventory.url}/api/movies/{via_id}", timeout=10).json()["title"] == "Renamed"

    delete_direct = requests.delete(f"{inventory.url}/api/movies/{direct_id}", timeout=10)
    delete_via = client.delete(f"/api/movies/{via_id}")
    assert delete_via.status_code == delete_direct.status_code == 204
    assert delete_via.data == delete_direct.content == b""
    assert delete_via.headers.get("Content-Type") == delete_direct.headers.get("Content-Type")
    assert client.get(f"/api/movies/{via_id}").status_code == 404


def test_delete_all_answers_the_same(client, inventory, seeded):
    via = client.delete("/api/movies/")
    assert via.status_code == 200 and via.get_json() == {"deleted": len(seeded)}
    direct = requests.delete(f"{inventory.url}/api/movies", timeout=10)
    assert direct.json() == {"deleted": 0} and client.delete("/api/movies").get_json() == {"deleted": 0}
    assert via.headers["Content-Type"] == direct.headers["Content-Type"]


def test_request_id_is_passed_to_the_inventory(client, seeded):
    # The inventory puts the request id it was given into its error body.
    response = client.get("/api/movies/999999999")
    assert response.get_json()["request_id"] == response.headers["X-Request-ID"]
    chosen = client.get("/api/movies/999999999", headers={"X-Request-ID": "client-chosen.id:1"})
    assert chosen.get_json()["request_id"] == chosen.headers["X-Request-ID"] == "client-chosen.id:1"
    # An unsafe id is replaced, never echoed.
    unsafe = client.get("/api/movies/999999999", headers={"X-Request-ID": "bad id<script>"})
    assert unsafe.headers["X-Request-ID"] != "bad id<script>"
    assert unsafe.get_json()["request_id"] == unsafe.headers["X-Request-ID"]


def test_connections_to_the_inventory_are_kept_alive_and_hop_by_hop_headers_stop_at_the_gateway(make_client):
    from .fake_upstreams import FakeUpstream, Recorder

    recorder = Recorder()
    with FakeUpstream(recorder) as upstream:
        client = make_client(inventory_url=upstream.url)
        for _ in range(5):
            response = client.get("/api/movies?limit=1", headers={
                "Connection": "keep-alive, X-Client-Hop", "X-Client-Hop": "1", "Keep-Alive": "timeout=5",
                "TE": "trailers", "Upgrade": "h2c", "Proxy-Authorization": "Basic eA==", "X-End-To-End": "sent",
                "Authorization": "Bearer t", "Accept": "application/json",
            })
            assert response.status_code == 200
            # What the inventory sent back, minus its hop-by-hop headers.
            assert response.headers["X-End-To-End"] == "kept"
            assert "X-Upstream-Hop" not in response.headers and "Keep-Alive" not in response.headers
        # Five requests, one TCP connection.
        assert upstream.connections == 1
    assert len(recorder.requests) == 5
    head = recorder.requests[-1]
    lines = head.split("\r\n")
    assert lines[0] == "GET /api/movies?limit=1 HTTP/1.1"
    names = {line.split(":", 1)[0].lower() for line in lines[1:]}
    assert {"x-end-to-end", "authorization", "accept", "x-request-id", "x-forwarded-for"} <= names
    assert not names & {"x-client-hop", "keep-alive", "te", "upgrade", "proxy-authorization"}

