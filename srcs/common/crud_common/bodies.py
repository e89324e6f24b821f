"""A request body, read whole or refused with the precise reason: for the Flask routes and the gateway's proxy."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .errors import ApiError, body_error


def too_large(limit: int) -> ApiError:
    reason = f"the body is larger than the {limit} bytes allowed"
    return ApiError(413, reason, details=[{"field": "body", "reason": reason}])


def read_body(environ: Mapping[str, Any], max_bytes: int) -> bytes:
    """The whole body as announced, at most `max_bytes` (413 otherwise), whether its length is announced or it is
    chunked. A body shorter than its Content-Length (the client gave up mid-upload) or a malformed chunked one is
    a 400: acting on a truncated body could store or publish something that was never sent."""
    stream = environ["wsgi.input"]
    announced = environ.get("CONTENT_LENGTH") or ""
    if announced and not announced.isdigit():
        raise ApiError(400, "Content-Length is not a number",
                       details=[{"field": "Content-Length", "reason": "must be a number of bytes"}])
    if announced and int(announced) > max_bytes:
        raise too_large(max_bytes)
    try:
        # Without a length (chunked), one byte more than allowed tells a body that is too large.
        body = stream.read(int(announced)) if announced else stream.read(max_bytes + 1)
    except Exception:  # noqa: BLE001 - what the HTTP server raises for a malformed chunked body or a cut upload
        raise body_error("could not be read: malformed chunked encoding, or the upload was cut off") from None
    if announced and len(body) != int(announced):
        raise body_error(f"is shorter than its Content-Length ({len(body)} of {announced} bytes)")
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    return body


def is_json(content_type: str | None) -> bool:
    """application/json or a +json type, whatever its parameters (charset)."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class NotAJsonObject(ValueError):
    """The bytes are not one JSON object; `reason` says why, in words a client can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_object(raw: bytes, *, parse_float: Callable[[str], Any] = float) -> dict[str, Any]:
    """The JSON object in `raw` (NaN and Infinity refused: they are not JSON), or NotAJsonObject."""
    try:
        document = json.loads(raw, parse_float=parse_float, parse_constant=_reject_constant)
    except ValueError as exc:  # UnicodeDecodeError included
        raise NotAJsonObject(f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise NotAJsonObject("is nested too deeply") from None
    if not isinstance(document, dict):
        raise NotAJsonObject(f"must be a JSON object, got {type(document).__name__}")
    return document


def exact_decimal(text: str) -> Decimal:
    """parse_float for amounts: a JSON number as written, with no binary rounding (0.1 stays 0.1)."""
    return Decimal(text)
