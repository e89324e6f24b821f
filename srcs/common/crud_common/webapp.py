"""What the two Flask services bind in their factory: the request id and the access line of every request, the
handlers that turn every failure into the one error shape, and the request-body and query-string readers their
routes call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from .bodies import NotAJsonObject, is_json, json_object, read_body
from .errors import ApiError, body_error, error_document, field_error, shorten, validation_error
from .metrics import HttpMetrics
from .request_ids import request_id_from

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)


# --- request ids and the access line -------------------------------------------------------------------------

def init_request_logging(app: Flask, access_logger: str, metrics: HttpMetrics, **defaults: str) -> None:
    """Every request gets an id (the client's plain X-Request-ID, else a new one), returned in X-Request-ID, and
    one access line: `METHOD TARGET STATUS DURATIONms request_id=ID`, then `name=value` for each default (which a
    route may change with `note`, e.g. the gateway's upstream=rabbitmq); and it is counted in `metrics`, under
    its route's pattern."""
    logger = logging.getLogger(access_logger)

    @app.before_request
    def _start() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        g.access_notes = dict(defaults)

    @app.after_request
    def _finish(response: Response) -> Response:
        # A request refused before _start ran (by routing: a 404 or a 405) still gets an id and a line.
        request_id = g.get("request_id") or request_id_from(request.headers.get("X-Request-ID"))
        g.request_id = request_id
        response.headers["X-Request-ID"] = request_id
        started = g.get("started", time.perf_counter())
        method, target, status = request.method, request.full_path.rstrip("?"), response.status_code
        notes = g.get("access_notes", defaults)
        route = request.url_rule.rule if request.url_rule is not None else None

        def finished() -> None:
            seconds = time.perf_counter() - started
            log_access(logger, method, target, status, seconds, request_id, notes)
            metrics.observe(route, method, status, seconds)

        if response.is_streamed:
            # A streamed answer (the whole list) ends when the server has sent its last piece: counted then.
            response.call_on_close(finished)
        else:
            finished()
        return response


def log_access(logger: logging.Logger, method: str, target: str, status: int, seconds: float, request_id: str,
               notes: Mapping[str, str]) -> None:
    """The one access line of a request, `seconds` after its arrival: for Flask's routes, a raw WSGI app and the
    reads the gateway's front carried alike."""
    extra = "".join(f" {name}={value}" for name, value in notes.items())
    logger.info("%s %s %s %.1fms request_id=%s%s", method, target, status, seconds * 1000, request_id, extra)


def note(name: str, value: str) -> None:
    """Change one `name=value` of this request's access line."""
    g.access_notes[name] = value


# --- errors ----------------------------------------------------------------------------------------------------

def error_response(error: ApiError, **extra: Any) -> Response:
    response = jsonify({**error_document(error.code, error.message, g.get("request_id", ""), error.details), **extra})
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def register_error_handlers(app: Flask, extra: Mapping[type[Exception], Callable[[Exception], ApiError]] = {}) -> None:
    """Every failure answered in the one error shape: ApiError, pydantic's validation (in the platform's
    wording), Werkzeug's HTTP errors (404, 405 with Allow, 413), `extra` (a service's own failures, such as the
    inventory's database errors) and, last, anything unexpected: a 500 whose trace goes to the log only."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        return error_response(validation_error(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        # PATH_INFO, not request.path, which merges the leading slashes of `//api/movies`.
        path = shorten(request.environ.get("PATH_INFO", ""))
        messages = {
            404: f"no resource at {path}",
            405: f"{shorten(request.method)} is not allowed on {path}",
            413: f"the body is larger than the {app.config['MAX_CONTENT_LENGTH']} bytes allowed",
        }
        details = [{"field": "body", "reason": messages[413]}] if status == 413 else None
        response = error_response(ApiError(status, messages.get(status) or exc.description or exc.name,
                                           details=details))
        if status == 405:
            # Werkzeug knows which methods the path allows; a 405 must say so.
            response.headers["Allow"] = dict(exc.get_headers()).get("Allow", "")
        return response

    for kind, convert in extra.items():
        app.register_error_handler(kind, lambda exc, convert=convert: error_response(convert(exc)))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(ApiError(500, "internal error; see the service log for this request id"))


# --- what a route reads ---------------------------------------------------------------------------------------

def refuse_query_parameters() -> None:
    """For a route that takes no query parameter (or as a before_request hook for all of an app's routes): an
    unknown parameter is a mistake to report, not to ignore (`DELETE /api/movies?title=x` expects a filter)."""
    for name in request.args:
        raise field_error(name, "unknown parameter: this request takes no query parameter")


def query(model: type[Model]) -> Model:
    """The query string as `model`, each parameter given once (a repeated one is ambiguous, so refused)."""
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise field_error(name, "must be given at most once")
    return model.model_validate(request.args.to_dict())


def json_body(*, parse_float: Callable[[str], Any] = float) -> dict[str, Any]:
    """The request body as a JSON object, within MAX_CONTENT_LENGTH, or the precise reason it is not one."""
    if not is_json(request.content_type):
        raise ApiError(415, "the body must be JSON: send Content-Type: application/json",
                       details=[{"field": "Content-Type", "reason": "must be application/json"}])
    try:
        return json_object(read_body(request.environ, current_app.config["MAX_CONTENT_LENGTH"]),
                           parse_float=parse_float)
    except NotAJsonObject as exc:
        raise body_error(exc.reason) from None
