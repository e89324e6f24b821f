"""The one place that turns every failure into the platform's JSON error shape.

`{"error": code, "message": text, "request_id": id}` plus `details` (field, reason) for bad input.
No HTML page and no stack trace ever reaches a client.
"""

from __future__ import annotations

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
    415: "unsupported_media_type",
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


def field_error(field: str, reason: str) -> ApiError:
    return ApiError(400, f"{field}: {reason}", code="validation_error", details=[{"field": field, "reason": reason}])


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
    details = []
    for item in exc.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        if item["type"] == "extra_forbidden":
            reason = "unknown field"
        elif item["type"] == "missing":
            reason = "is required"
        else:
            # pydantic prefixes messages of custom validators with "Value error, ".
            reason = item["msg"].removeprefix("Value error, ")
        details.append({"field": field, "reason": reason})
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
        messages = {
            404: f"no resource at {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
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
