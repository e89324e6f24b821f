"""The billing contract, written once for both sides of billing_queue: the gateway validates a client's order and
publishes it with this, the consumer decodes and stores it with this, so the two cannot disagree on what an order
is (an order answered 200 and then dead-lettered), nor on the queue's declaration (which the broker refuses when
two differ).

An order is three fields, each in two spellings, as openapi.yaml writes them: `user_id` a JSON integer up to
10^18-1 or a string of 1 to 18 digits; `number_of_items` up to 10^9-1 or 1 to 9 digits; `total_amount` a
non-negative JSON number or decimal string of at most 10 digits before the point and 2 after it (trailing zeros
aside). The bounds sit inside orders_db's columns (bigint, integer, NUMERIC(12,2)), so an accepted order can
always be stored. Booleans are not numbers, unknown fields are refused, and nothing is coerced by accident
(" 3", "+3", "1e3", 3.0, "٣").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .bodies import NotAJsonObject, exact_decimal, json_object
from .errors import Details, validation_details

MAX_USER_ID = 10**18 - 1
MAX_NUMBER_OF_ITEMS = 10**9 - 1
MAX_AMOUNT = Decimal("9999999999.99")

_USER_ID_TEXT = re.compile(r"[0-9]{1,18}")
_ITEM_COUNT_TEXT = re.compile(r"[0-9]{1,9}")
_AMOUNT_TEXT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2}0*)?")


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


def _amount(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a non-negative decimal number, not a boolean")
    if isinstance(value, str):
        if not _AMOUNT_TEXT.fullmatch(value):
            raise ValueError("must be a non-negative decimal number such as 180 or 180.50 (at most 2 decimals)")
        return Decimal(value)
    if isinstance(value, (int, Decimal)):  # JSON numbers arrive as Decimal (exact_decimal): no binary rounding
        amount = Decimal(value)
        # -0.0 is a valid JSON number equal to 0: it is stored, and published, as 0.00.
        return amount.copy_abs() if amount.is_zero() else amount
    raise ValueError("must be a non-negative decimal number (a JSON number or a decimal string)")


UserId = Annotated[int, BeforeValidator(_whole_number(_USER_ID_TEXT, 18)), Field(ge=0, le=MAX_USER_ID, strict=True)]
ItemCount = Annotated[
    int, BeforeValidator(_whole_number(_ITEM_COUNT_TEXT, 9)), Field(ge=0, le=MAX_NUMBER_OF_ITEMS, strict=True)
]
Amount = Annotated[
    Decimal, BeforeValidator(_amount), Field(ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False, strict=True)
]


class OrderFields(BaseModel):
    """An order's three fields, validated: what a client may send, and what a billing message carries."""

    # forbid: a misspelt field is an error, not an order silently missing a value.
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    number_of_items: ItemCount
    total_amount: Amount


def encode_order(order: OrderFields) -> bytes:
    """The message body: canonical JSON, so one order is always the same bytes (a retry is recognisable)."""
    return json.dumps(
        {"user_id": order.user_id, "number_of_items": order.number_of_items,
         "total_amount": f"{order.total_amount:.2f}"},
        separators=(",", ":"),
    ).encode()


class InvalidOrder(ValueError):
    """A message body that can never become an order; `details` says which field and why."""

    def __init__(self, message: str, details: Details | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + ": " + "; ".join(f"{d['field']}: {d['reason']}" for d in self.details)


def decode_order(body: bytes) -> OrderFields:
    """The order in a message body (the canonical one the gateway publishes, or any spelling the contract
    accepts), or InvalidOrder."""
    try:
        return OrderFields.model_validate(json_object(body, parse_float=exact_decimal))
    except NotAJsonObject as exc:
        raise InvalidOrder(f"the body {exc.reason}") from None
    except ValidationError as exc:
        raise InvalidOrder("invalid order", validation_details(exc)) from None


# --- the queue ------------------------------------------------------------------------------------------------

def dead_letter_exchange(queue: str) -> str:
    return f"{queue}.dlx"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"


def queue_arguments(queue: str) -> dict[str, Any]:
    """billing_queue's arguments (README, "Queue topology"): a quorum queue (replicated, durable) whose messages
    that can never be stored go to the dead-letter queue, which nacks a publish when full (the gateway then
    answers 503), and returns a message at most 5 times before dead-lettering it."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": dead_letter_exchange(queue),
        "x-dead-letter-routing-key": dead_letter_queue(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 5,
    }


def billing_queue_declarations(queue: str) -> list[tuple[str, dict[str, Any]]]:
    """The declarations both sides make, in order, as (pika channel method, its arguments): the dead-letter
    exchange and queue, their binding, then billing_queue itself."""
    return [
        ("exchange_declare", {"exchange": dead_letter_exchange(queue), "exchange_type": "direct", "durable": True}),
        ("queue_declare", {"queue": dead_letter_queue(queue), "durable": True,
                           "arguments": {"x-queue-type": "quorum"}}),
        ("queue_bind", {"queue": dead_letter_queue(queue), "exchange": dead_letter_exchange(queue),
                        "routing_key": dead_letter_queue(queue)}),
        ("queue_declare", {"queue": queue, "durable": True, "arguments": queue_arguments(queue)}),
    ]


def declare_billing_queue(channel: Any, queue: str) -> None:
    """The one declaration both sides make, on a pika BlockingChannel: the gateway before its first publish, so
    orders sent before the consumer ever ran are kept, and the consumer before it consumes."""
    for method, arguments in billing_queue_declarations(queue):
        getattr(channel, method)(**arguments)


def declare_billing_queue_async(channel: Any, queue: str, on_declared: Callable[[], None]) -> None:
    """The same declaration on a channel of pika's asynchronous adapters (the gateway's publisher): each step
    sent once the broker answered the one before, then `on_declared()`. A refusal closes the channel, which
    its close callback reports."""
    steps = iter(billing_queue_declarations(queue))

    def next_step(_answer: Any = None) -> None:
        if not channel.is_open:  # closing: its close callback reports why
            return
        step = next(steps, None)
        if step is None:
            on_declared()
            return
        method, arguments = step
        getattr(channel, method)(callback=next_step, **arguments)

    next_step()
