"""HTTP routes of the inventory. Thin: parse and validate, call a data function, shape the answer."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import movies
from .db import read, request_connection
from .errors import ApiError, BrokenStream, error_response, field_error, shorten
from .schemas import MAX_ID, ListQuery, MovieCreate, MovieUpdate

log = logging.getLogger(__name__)

bp = Blueprint("movies", __name__)

_ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
# Movies per query of a streamed list: enough to make each round trip worth it, few enough to keep the
# service's memory flat whatever the table holds (bench/README.md, "the whole list").
STREAM_BATCH = 2000


def _movie_id(raw: str) -> int:
    if not _ID_PATTERN.fullmatch(raw) or int(raw) > MAX_ID:
        raise field_error("id", f"must be a positive integer, got {shorten(raw)!r}")
    return int(raw)


def _query(model: type[ListQuery]) -> ListQuery:
    """The query string as `model`, each parameter given once (a repeated one is ambiguous, so refused)."""
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise field_error(shorten(name), "must be given at most once")
    return model.model_validate(request.args.to_dict())


def _no_query() -> None:
    for name in request.args:
        raise field_error(shorten(name), "unknown parameter: this request takes no query parameter")


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object, or the precise reason it is not one."""
    if not request.is_json:
        raise ApiError(
            415,
            "the body must be JSON: send Content-Type: application/json",
            details=[{"field": "Content-Type", "reason": "must be application/json"}],
        )
    raw = _body_bytes()
    try:
        body = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _body_error(f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise _body_error("is nested too deeply to be a movie") from None
    if not isinstance(body, dict):
        raise _body_error(f"must be a JSON object, got {type(body).__name__}")
    return body


def _body_bytes() -> bytes:
    """The whole body as announced, within MAX_CONTENT_LENGTH (413 otherwise), or a 400 saying why not."""
    announced = request.content_length
    try:
        raw = request.get_data(cache=True)  # raises 413 when Content-Length is over MAX_CONTENT_LENGTH
        # A chunked body has no Content-Length: Werkzeug stops reading at the limit without complaint,
        # so a full-sized read is probed for one byte more.
        if announced is None and len(raw) >= current_app.config["MAX_CONTENT_LENGTH"] and request.stream.read(1):
            raise RequestEntityTooLarge()
    except HTTPException:
        raise
    except Exception:  # noqa: BLE001 - what the HTTP server raises for a malformed chunked body or a cut upload
        raise _body_error("could not be read: malformed chunked encoding, or the upload was cut off") from None
    if announced is not None and len(raw) != announced:
        # The client closed its side early: acting on a truncated body could store something never sent.
        raise _body_error(f"is shorter than its Content-Length ({len(raw)} of {announced} bytes)")
    return raw


def _body_error(reason: str) -> ApiError:
    return ApiError(400, f"the body {reason}", details=[{"field": "body", "reason": reason}])


def _not_found(movie_id: int) -> ApiError:
    return ApiError(404, f"movie {movie_id} does not exist")


@bp.get("/api/movies")
@bp.get("/api/movies/")
def list_movies() -> Response:
    params = _query(ListQuery)
    if params.limit is None:
        return _every_movie(params.title, params.after)
    page = read(movies.list_movies, title=params.title, after=params.after, limit=params.limit + 1)
    has_next = len(page) > params.limit
    page = page[: params.limit]
    response = jsonify(page)
    if has_next:
        # Relative link: it stays right when the gateway serves this under its own host.
        query = {"limit": params.limit, "after": page[-1]["id"]}
        if params.title:
            query["title"] = params.title
        response.headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    return response


def _every_movie(title: str, after: int) -> Response:
    """Every matching movie, in id order. The first batch is read before answering, so a database that is down
    is still a 503; a list that fits in it is one plain answer, a longer one is streamed batch by batch."""
    first = read(movies.json_batch, title=title, after=after, limit=STREAM_BATCH)
    if first.count < STREAM_BATCH:
        return Response(f"[{first.json}]\n", mimetype="application/json")
    return Response(stream_with_context(_json_array(first, title)), mimetype="application/json")


def _json_array(first: movies.JsonBatch, title: str) -> Iterator[bytes]:
    yield f"[{first.json}".encode()
    batch = first
    while batch.count == STREAM_BATCH:
        try:
            batch = read(movies.json_batch, title=title, after=batch.last_id, limit=STREAM_BATCH)
        except SQLAlchemyError as exc:
            log.warning("list of movies cut off after id %d: database unavailable: %s", batch.last_id,
                        str(exc).strip().splitlines()[0])
            raise BrokenStream("the database failed in the middle of the list") from None
        if batch.count:
            yield f",{batch.json}".encode()
    yield b"]\n"


@bp.post("/api/movies")
@bp.post("/api/movies/")
def create_movie() -> tuple[Response, int, dict[str, str]]:
    _no_query()
    data = MovieCreate.model_validate(_json_object())
    movie = movies.create_movie(request_connection(), title=data.title, description=data.description)
    # 200, not 201: the exercise's audit asks for 200 (its latest revision calls 201 a typo).
    return jsonify(movie), 200, {"Location": f"/api/movies/{movie['id']}"}


@bp.delete("/api/movies")
@bp.delete("/api/movies/")
def delete_all_movies() -> Response:
    # Only the plain request wipes the catalog: `DELETE /api/movies?title=x` is a client expecting a filter.
    _no_query()
    return jsonify({"deleted": movies.delete_all_movies(request_connection())})


@bp.get("/api/movies/<movie_id>")
@bp.get("/api/movies/<movie_id>/")
def get_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    _no_query()
    movie = read(movies.find_movie, identifier)
    if movie is None:
        raise _not_found(identifier)
    return jsonify(movie)


@bp.put("/api/movies/<movie_id>")
@bp.put("/api/movies/<movie_id>/")
def update_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    _no_query()
    changes = MovieUpdate.model_validate(_json_object()).changes()
    movie = movies.update_movie(request_connection(), identifier, changes)
    if movie is None:
        raise _not_found(identifier)
    return jsonify(movie)


@bp.delete("/api/movies/<movie_id>")
@bp.delete("/api/movies/<movie_id>/")
def delete_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    _no_query()
    if not movies.delete_movie(request_connection(), identifier):
        raise _not_found(identifier)
    # A 204 has no body, so no Content-Type either.
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


@bp.get("/health")
def health() -> Response | tuple[Response, int]:
    try:
        read(lambda connection: connection.execute(text("SELECT 1")))
    except Exception as exc:  # any failure to answer means "not healthy", with the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return error_response(
            503, "service_unavailable", f"database unavailable: {reason}", extra={"checks": {"database": "down"}}
        )
    return jsonify({"status": "ok", "checks": {"database": "up"}}), 200
