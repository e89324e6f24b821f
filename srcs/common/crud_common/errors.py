"""The platform's one error shape: `{"error": code, "message": text, "request_id": id}`, plus `details` (field,
reason) for bad input. Every service, and the HTTP server in front of each, answers its errors with it."""

from __future__ import annotations

import errno
import json
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

# The machine-readable code of each status the platform answers. One table for the services' own answers,
# the gateway's proxy and the HTTP server's refusals alike.
CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

# An error names at most this many bad fields, and echoes at most this much of any one value: a 64 KiB body of
# unknown fields gets a short answer, not one ten times its size.
MAX_DETAILS = 5
MAX_ECHO = 80

Details = list[dict[str, str]]


def code_for(status: int) -> str:
    return CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


class ApiError(Exception):
    """An expected failure with its HTTP status, machine code and a message for humans."""

    def __init__(self, status: int, message: str, *, code: str | None = None, details: Details | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or code_for(status)
        self.message = message
        self.details = details
        # Headers the answer must carry (a 401's WWW-Authenticate, a 429's Retry-After).
        self.headers = headers or {}


class BrokenStream(ConnectionResetError):
    """Raised inside a streamed body that cannot be finished. The HTTP server then closes the connection without
    the final chunk (gunicorn treats a reset as the client's doing: no traceback), so the client sees an
    incomplete answer, never one that looks complete."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.ECONNRESET, reason)


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """`text` as an error may echo it: at most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_error(field: str, reason: str) -> ApiError:
    field = shorten(field)
    return ApiError(400, f"{field}: {reason}", code="validation_error", details=[{"field": field, "reason": reason}])


def body_error(reason: str) -> ApiError:
    """A body-level problem (not JSON, cut short, ...): named `body` in details."""
    return ApiError(400, f"the body {reason}", details=[{"field": "body", "reason": reason}])


def validation_details(exc: ValidationError) -> Details:
    """One entry per bad field, at most MAX_DETAILS of them (the last one says how many more there are), in the
    platform's wording whoever validated: "unknown field", "is required", or the rule that failed."""
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


def validation_error(exc: ValidationError) -> ApiError:
    details = validation_details(exc)
    message = "; ".join(f"{detail['field']}: {detail['reason']}" for detail in details)
    return ApiError(400, message, code="validation_error", details=details)


def error_document(code: str, message: str, request_id: str, details: Details | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id}
    if details:
        body["details"] = details
    return body


def error_json(code: str, message: str, request_id: str, details: Details | None = None) -> bytes:
    """The document as Flask writes its JSON: compact, UTF-8, one line."""
    document = error_document(code, message, request_id, details)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def wsgi_error(error: ApiError, request_id: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of an error answered outside Flask: by a raw WSGI app or the HTTP server."""
    body = error_json(error.code, error.message, request_id, error.details)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Request-ID", request_id),
               *error.headers.items()]
    return status_line(error.status), headers, body
