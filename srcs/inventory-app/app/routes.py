"""HTTP routes of the inventory. Thin: parse and validate, call a data function, shape the answer."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from urllib.parse import urlencode

from crud_common.errors import ApiError, BrokenStream, field_error, shorten
from crud_common.logs import one_line
from crud_common.webapp import error_response, json_body, query, refuse_query_parameters
from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from sqlalchemy.exc import SQLAlchemyError

from . import movies
from .db import read, write
from .errors import count_database_failure
from .schemas import MAX_ID, ListQuery, MovieCreate, MovieUpdate

log = logging.getLogger(__name__)

bp = Blueprint("movies", __name__)

_ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
# Movies per query of a streamed list: enough to make each round trip worth it, few enough to keep the
# service's memory flat whatever the table holds (bench/README.md, "The whole list").
STREAM_BATCH = 2000


def _movie_id(raw: str) -> int:
    if not _ID_PATTERN.fullmatch(raw) or int(raw) > MAX_ID:
        raise field_error("id", f"must be a positive integer, got {shorten(raw)!r}")
    return int(raw)


def _not_found(movie_id: int) -> ApiError:
    return ApiError(404, f"movie {movie_id} does not exist")


@bp.get("/api/movies")
@bp.get("/api/movies/")
def list_movies() -> Response:
    params = query(ListQuery)
    if params.limit is None:
        return _every_movie(params.title, params.after)
    page = read(movies.list_movies, title=params.title, after=params.after, limit=params.limit + 1,
                search_timeout_ms=_search_timeout_ms())
    has_next = len(page) > params.limit
    page = page[: params.limit]
    response = jsonify(page)
    if has_next:
        # Relative link: it stays right when the gateway serves this under its own host.
        next_page = {"limit": params.limit, "after": page[-1]["id"]}
        if params.title:
            next_page["title"] = params.title
        response.headers["Link"] = f'<{request.path}?{urlencode(next_page)}>; rel="next"'
    return response


def _every_movie(title: str, after: int) -> Response:
    """Every matching movie, in id order. The first batch is read before answering, so a database that is down
    is still a 503; a list that fits in it is one plain answer, a longer one is streamed batch by batch."""
    first = read(movies.json_batch, title=title, after=after, limit=STREAM_BATCH, search_timeout_ms=_search_timeout_ms())
    if first.count < STREAM_BATCH:
        return Response(f"[{first.json}]\n", mimetype="application/json")
    return Response(stream_with_context(_json_array(first, title)), mimetype="application/json")


def _search_timeout_ms() -> int:
    return current_app.extensions["inventory_config"].db_search_timeout_ms


def _json_array(first: movies.JsonBatch, title: str) -> Iterator[bytes]:
    yield f"[{first.json}".encode()
    batch = first
    search_timeout_ms = _search_timeout_ms()
    while batch.count == STREAM_BATCH:
        try:
            batch = read(movies.json_batch, title=title, after=batch.last_id, limit=STREAM_BATCH,
                         search_timeout_ms=search_timeout_ms)
        except movies.SearchTooBroad:
            log.warning("list of movies cut off after id %d: the search for %r took too long", batch.last_id,
                        shorten(title))
            raise BrokenStream("the search took too long in the middle of the list") from None
        except SQLAlchemyError as exc:
            log.warning("list of movies cut off after id %d: database unavailable: %s", batch.last_id, one_line(exc))
            count_database_failure(exc)
            raise BrokenStream("the database failed in the middle of the list") from None
        if batch.count:
            yield f",{batch.json}".encode()
    yield b"]\n"


@bp.post("/api/movies")
@bp.post("/api/movies/")
def create_movie() -> tuple[Response, int, dict[str, str]]:
    refuse_query_parameters()
    data = MovieCreate.model_validate(json_body())
    movie = write(movies.create_movie, title=data.title, description=data.description)
    # 200, not 201: the exercise's audit asks for 200 (its latest revision calls 201 a typo).
    return jsonify(movie), 200, {"Location": f"/api/movies/{movie['id']}"}


@bp.delete("/api/movies")
@bp.delete("/api/movies/")
def delete_all_movies() -> Response:
    # Only the plain request wipes the catalog: `DELETE /api/movies?title=x` is a client expecting a filter.
    refuse_query_parameters()
    return jsonify({"deleted": write(movies.delete_all_movies)})


@bp.get("/api/movies/<movie_id>")
@bp.get("/api/movies/<movie_id>/")
def get_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    refuse_query_parameters()
    movie = read(movies.find_movie, identifier)
    if movie is None:
        raise _not_found(identifier)
    return jsonify(movie)


@bp.put("/api/movies/<movie_id>")
@bp.put("/api/movies/<movie_id>/")
def update_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    refuse_query_parameters()
    changes = MovieUpdate.model_validate(json_body()).changes()
    movie = write(movies.update_movie, identifier, changes)
    if movie is None:
        raise _not_found(identifier)
    return jsonify(movie)


@bp.delete("/api/movies/<movie_id>")
@bp.delete("/api/movies/<movie_id>/")
def delete_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    refuse_query_parameters()
    if not write(movies.delete_movie, identifier):
        raise _not_found(identifier)
    # A 204 has no body, so no Content-Type either.
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


@bp.get("/health")
def health() -> Response:
    refuse_query_parameters()
    try:
        read(movies.ping)
    except Exception as exc:  # noqa: BLE001 - any failure to answer means "not healthy", with the reason
        return error_response(ApiError(503, f"database unavailable: {one_line(exc)}"), checks={"database": "down"})
    return jsonify({"status": "ok", "checks": {"database": "up"}})
