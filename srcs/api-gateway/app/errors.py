"""The one place that turns every failure into the platform's JSON error shape.

`{"error": code, "message": text, "request_id": id}` plus `details` (field, reason) for bad input.
No HTML page and no stack trace ever reaches a client.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "request_header_fields_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """An expected failure with its HTTP status, machine code and a message for humans."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details


class BrokenStream(ConnectionResetError):
    """Raised inside a streamed body that cannot be finished. The HTTP server then closes the connection without
    the final chunk (gunicorn treats a reset as the client's doing: no traceback), so the client sees an
    incomplete answer, never one that looks complete."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.ECONNRESET, reason)


# An error names at most this many bad fields, and echoes at most this much of any one value: a 64 KiB body of
# unknown fields gets a short answer, not one ten times its size.
MAX_DETAILS = 5
MAX_ECHO = 80


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """`text` as an error may echo it: at most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_error(field: str, reason: str) -> ApiError:
    return ApiError(400, f"{field}: {reason}", code="validation_error", details=[{"field": field, "reason": reason}])


def refuse_query_parameters() -> None:
    """A before_request hook: the gateway's own routes (billing, health, docs) take no query parameter, and an
    unknown parameter is a mistake to report, not to ignore."""
    for name in request.args:
        raise field_error(shorten(name), "unknown parameter: this request takes no query parameter")


def error_document(
    code: str, message: str, request_id: str, details: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The shared error shape, for Flask's answers and the proxy's alike."""
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id}
    if details:
        body["details"] = details
    return body


def error_response(
    status: int, code: str, message: str, details: list[dict[str, str]] | None = None
) -> Response:
    response = jsonify(error_document(code, message, g.get("request_id", ""), details))
    response.status_code = status
    return response


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """One entry per bad field, at most MAX_DETAILS of them (the last one says how many more there are)."""
    details = []
    errors = exc.errors(include_url=False)
    for item in errors[:MAX_DETAILS]:
        field = shorten(".".join(str(part) for part in item["loc"]) or "body")
        if item["type"] == "extra_forbidden":
            reason = "unknown field"
        elif item["type"] == "missing":
            reason = "is required"
        else:
            # pydantic prefixes messages of custom validators with "Value error, ".
            reason = shorten(item["msg"].removeprefix("Value error, "), 200)
        details.append({"field": field, "reason": reason})
    if len(errors) > MAX_DETAILS:
        details[-1]["reason"] += f" (and {len(errors) - MAX_DETAILS} more problems not listed)"
    return details


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        details = validation_details(exc)
        message = "; ".join(f"{d['field']}: {d['reason']}" for d in details)
        return error_response(400, "validation_error", message, details)

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
        response = error_response(
            status, CODES.get(status, "error"), messages.get(status) or exc.description or exc.name, details
        )
        if status == 405:
            # Werkzeug knows which methods the path allows; a 405 must say so.
            response.headers["Allow"] = dict(exc.get_headers()).get("Allow", "")
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the gateway log for this request id")
