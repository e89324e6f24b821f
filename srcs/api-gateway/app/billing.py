"""POST /api/billing: validate an order, publish it to billing_queue, answer 200 only once the broker has it."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .errors import ApiError, field_error
from .observability import mark_upstream
from .publisher import BrokerUnavailable, Publisher

log = logging.getLogger(__name__)

bp = Blueprint("billing", __name__)

# The contract's bounds, one rule per input shape, each exactly as openapi.yaml writes it: a JSON integer up to
# the maximum, or a string of at most that many digits. They sit inside orders_db's columns (user_id bigint,
# number_of_items integer, total_amount NUMERIC(12,2)), so an order accepted here can always be stored.
MAX_USER_ID = 10**18 - 1
MAX_NUMBER_OF_ITEMS = 10**9 - 1
MAX_AMOUNT = Decimal("9999999999.99")

_USER_ID_TEXT = re.compile(r"[0-9]{1,18}")
_ITEM_COUNT_TEXT = re.compile(r"[0-9]{1,9}")
# At most 10 digits before the point and 2 after it (trailing zeros aside, as for a JSON number).
_AMOUNT_TEXT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2}0*)?")
# Idempotency keys end up in AMQP properties and logs: visible ASCII only.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def _whole_number(text_form: re.Pattern[str], digits: int) -> Any:
    def parse(value: Any) -> Any:
        # JSON booleans are Python ints; an order count of `true` is a client bug, not 1.
        if isinstance(value, bool):
            raise ValueError("must be a non-negative integer, not a boolean")
        if isinstance(value, str):
            if not text_form.fullmatch(value):
                raise ValueError(f"must be a non-negative integer: a string of 1 to {digits} digits")
            return int(value)
        if isinstance(value, int):
            return value
        raise ValueError("must be a non-negative integer (a JSON integer or a string of digits)")

    return parse


def _decimal_input(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a non-negative decimal number, not a boolean")
    if isinstance(value, str):
        if not _AMOUNT_TEXT.fullmatch(value):
            raise ValueError("must be a non-negative decimal number such as 180 or 180.50 (at most 2 decimals)")
        return Decimal(value)
    if isinstance(value, (int, Decimal)):  # the body is parsed with parse_float=Decimal: no binary rounding
        amount = Decimal(value)
        # -0.0 is a valid JSON number equal to 0: it is stored, and published, as 0.00.
        return amount.copy_abs() if amount.is_zero() else amount
    raise ValueError("must be a non-negative decimal number (a JSON number or a decimal string)")


UserId = Annotated[
    int, BeforeValidator(_whole_number(_USER_ID_TEXT, 18)), Field(ge=0, le=MAX_USER_ID, strict=True)
]
ItemCount = Annotated[
    int, BeforeValidator(_whole_number(_ITEM_COUNT_TEXT, 9)), Field(ge=0, le=MAX_NUMBER_OF_ITEMS, strict=True)
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_decimal_input),
    Field(ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False, strict=True),
]


class Order(BaseModel):
    # forbid: a misspelt field is an error, not an order silently missing a value.
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    number_of_items: ItemCount
    total_amount: Amount

    def message_body(self) -> bytes:
        """The published JSON: canonical, so a retried order (same Idempotency-Key) is byte-for-byte the same."""
        return json.dumps(
            {
                "user_id": self.user_id,
                "number_of_items": self.number_of_items,
                "total_amount": f"{self.total_amount:.2f}",
            },
            separators=(",", ":"),
        ).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


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
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _body_error(f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise _body_error("is nested too deeply to be an order") from None
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
        # The client closed its side early: publishing a truncated body could bill an order never sent.
        raise _body_error(f"is shorter than its Content-Length ({len(raw)} of {announced} bytes)")
    return raw


def _body_error(reason: str) -> ApiError:
    return ApiError(400, f"the body {reason}", details=[{"field": "body", "reason": reason}])


def _message_id(body: bytes) -> str:
    """The order's message id: the consumer stores each id once.

    With an Idempotency-Key, the id is derived from the key *and* the canonical order, so a retry (same key, same
    order) is the same message and is stored once, while the same key sent with another order is another message
    and is stored too: a reused key can never make the gateway answer 200 for an order that is then dropped.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return uuid.uuid4().hex
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise field_error("Idempotency-Key", "must be 1 to 128 visible ASCII characters")
    return hashlib.sha256(key.encode() + b"\n" + body).hexdigest()[:32]


@bp.post("/api/billing")
@bp.post("/api/billing/")
def post_order() -> Response:
    order = Order.model_validate(_json_object())
    body = order.message_body()
    message_id = _message_id(body)
    mark_upstream("rabbitmq")
    publisher: Publisher = current_app.extensions["publisher"]
    try:
        publisher.publish(body, message_id=message_id, correlation_id=g.request_id)
    except BrokerUnavailable as exc:
        log.warning("order %s not published: %s", message_id, exc)
        raise ApiError(503, "the billing queue cannot take the order now, try again later") from None
    log.info("order %s published", message_id)
    return jsonify({"message": "Message posted", "message_id": message_id, "request_id": g.request_id})
