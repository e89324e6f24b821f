"""HTTP routes of the inventory. Thin: parse and validate, call a data function, shape the answer."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text
from werkzeug.exceptions import RequestEntityTooLarge

from . import movies
from .db import read, request_connection
from .errors import ApiError, error_response, field_error
from .schemas import MAX_ID, ListQuery, MovieCreate, MovieUpdate

bp = Blueprint("movies", __name__)

_ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")


def _movie_id(raw: str) -> int:
    if not _ID_PATTERN.fullmatch(raw) or int(raw) > MAX_ID:
        raise field_error("id", f"must be a positive integer, got {raw!r}")
    return int(raw)


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object, or the precise reason it is not one."""
    if not request.is_json:
        raise ApiError(
            415,
            "the body must be JSON: send Content-Type: application/json",
            details=[{"field": "Content-Type", "reason": "must be application/json"}],
        )
    raw = request.get_data(cache=True)  # raises 413 when Content-Length is over MAX_CONTENT_LENGTH
    # A chunked body has no Content-Length: Werkzeug stops reading at the limit without complaint,
    # so a full-sized read is probed for one byte more.
    if len(raw) >= (current_app.config["MAX_CONTENT_LENGTH"] or len(raw) + 1) and request.stream.read(1):
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _body_error(f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise _body_error("is nested too deeply to be a movie") from None
    if not isinstance(body, dict):
        raise _body_error(f"must be a JSON object, got {type(body).__name__}")
    return body


def _body_error(reason: str) -> ApiError:
    return ApiError(400, f"the body {reason}", details=[{"field": "body", "reason": reason}])


def _not_found(movie_id: int) -> ApiError:
    return ApiError(404, f"movie {movie_id} does not exist")


@bp.get("/api/movies")
@bp.get("/api/movies/")
def list_movies() -> Response:
    params = ListQuery.model_validate(request.args.to_dict())
    page = read(lambda connection: movies.list_movies(
        connection, title=params.title, after=params.after, limit=params.limit + 1
    ))
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


@bp.post("/api/movies")
@bp.post("/api/movies/")
def create_movie() -> tuple[Response, int, dict[str, str]]:
    data = MovieCreate.model_validate(_json_object())
    movie = movies.create_movie(request_connection(), title=data.title, description=data.description)
    return jsonify(movie), 201, {"Location": f"/api/movies/{movie['id']}"}


@bp.delete("/api/movies")
@bp.delete("/api/movies/")
def delete_all_movies() -> Response:
    return jsonify({"deleted": movies.delete_all_movies(request_connection())})


@bp.get("/api/movies/<movie_id>")
@bp.get("/api/movies/<movie_id>/")
def get_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    movie = read(lambda connection: movies.find_movie(connection, identifier))
    if movie is None:
        raise _not_found(identifier)
    return jsonify(movie)


@bp.put("/api/movies/<movie_id>")
@bp.put("/api/movies/<movie_id>/")
def update_movie(movie_id: str) -> Response:
    identifier = _movie_id(movie_id)
    changes = MovieUpdate.model_validate(_json_object()).changes()
    movie = movies.update_movie(request_connection(), identifier, changes)
    if movie is None:
        raise _not_found(identifier)
    return jsonify(movie)


@bp.delete("/api/movies/<movie_id>")
@bp.delete("/api/movies/<movie_id>/")
def delete_movie(movie_id: str) -> tuple[str, int]:
    identifier = _movie_id(movie_id)
    if not movies.delete_movie(request_connection(), identifier):
        raise _not_found(identifier)
    return "", 204


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
