"""POST /api/billing: validate an order, publish it to billing_queue, answer 200 only once the broker has it."""

from __future__ import annotations

import json
import logging
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError, field_error
from .observability import mark_upstream
from .publisher import BrokerUnavailable, Publisher

log = logging.getLogger(__name__)

bp = Blueprint("billing", __name__)

# The bounds of orders_db's columns (user_id bigint, number_of_items integer, total_amount NUMERIC(12,2)): a value
# beyond them could never be stored, so it is bad input here rather than a dead letter later.
MAX_USER_ID = 2**63 - 1
MAX_NUMBER_OF_ITEMS = 2**31 - 1
MAX_AMOUNT = Decimal("9999999999.99")

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
# Idempotency keys end up in AMQP properties and logs: visible ASCII only.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def _integer_input(value: Any) -> Any:
    # JSON booleans are Python ints; an order count of `true` is a client bug, not 1.
    if isinstance(value, bool):
        raise ValueError("must be a non-negative integer, not a boolean")
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("must be a non-negative integer (digits only)")
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError("must be a non-negative integer (a JSON integer or a string of digits)")


def _decimal_input(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a non-negative decimal number, not a boolean")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError("must be a non-negative decimal number such as 180 or 180.50")
        return Decimal(value)
    if isinstance(value, (int, Decimal)):  # the body is parsed with parse_float=Decimal: no binary rounding
        return Decimal(value)
    raise ValueError("must be a non-negative decimal number (a JSON number or a decimal string)")


UserId = Annotated[int, BeforeValidator(_integer_input), Field(ge=0, le=MAX_USER_ID, strict=True)]
ItemCount = Annotated[int, BeforeValidator(_integer_input), Field(ge=0, le=MAX_NUMBER_OF_ITEMS, strict=True)]
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
    raw = request.get_data(cache=True)  # raises 413 when Content-Length is over MAX_CONTENT_LENGTH
    # A chunked body has no Content-Length: Werkzeug stops reading at the limit without complaint,
    # so a full-sized read is probed for one byte more.
    if len(raw) >= current_app.config["MAX_CONTENT_LENGTH"] and request.stream.read(1):
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _body_error(f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise _body_error("is nested too deeply to be an order") from None
    if not isinstance(body, dict):
        raise _body_error(f"must be a JSON object, got {type(body).__name__}")
    return body


def _body_error(reason: str) -> ApiError:
    return ApiError(400, f"the body {reason}", details=[{"field": "body", "reason": reason}])


def _message_id() -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return uuid.uuid4().hex
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise field_error("Idempotency-Key", "must be 1 to 128 visible ASCII characters")
    return key


@bp.post("/api/billing")
@bp.post("/api/billing/")
def post_order() -> Response:
    order = Order.model_validate(_json_object())
    message_id = _message_id()
    mark_upstream("rabbitmq")
    publisher: Publisher = current_app.extensions["publisher"]
    try:
        publisher.publish(order.message_body(), message_id=message_id, correlation_id=g.request_id)
    except BrokerUnavailable as exc:
        log.warning("order %s not published: %s", message_id, exc)
        raise ApiError(503, "the billing queue cannot take the order now, try again later") from None
    log.info("order %s published", message_id)
    return jsonify({"message": "Message posted", "message_id": message_id, "request_id": g.request_id})
