"""What a billing message must be: a JSON object with exactly the three order fields, validated by pydantic.

The rules are the platform contract's: ids and counts are non-negative integers given as a JSON integer or a
string of digits; the amount is a non-negative decimal given as a JSON number or a decimal string, with at most
2 decimal places and at most 12 digits (NUMERIC(12,2)). Booleans are not numbers and unknown fields are refused.
Every input shape is matched strictly, so nothing is coerced by accident (" 3", "+3", "1e3", 3.0, true).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1

_Digits = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]+$")]
_DecimalText = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?$")]


def _whole_number(maximum: int) -> Any:
    # The pattern leaves int() nothing to misread; the bounds are the column's.
    return Annotated[StrictInt | _Digits, AfterValidator(int), Ge(0), Le(maximum)]


# JSON numbers arrive as Decimal (parse_float=Decimal), never float, so 0.1 stays exactly 0.1.
_Amount = Annotated[
    StrictInt | Annotated[Decimal, Strict()] | _DecimalText,
    AfterValidator(Decimal),
    Field(ge=0, max_digits=12, decimal_places=2),
]


class OrderMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: _whole_number(BIGINT_MAX)  # type: ignore[valid-type]
    number_of_items: _whole_number(INTEGER_MAX)  # type: ignore[valid-type]
    total_amount: _Amount


@dataclass(frozen=True)
class OrderRow:
    """A validated order with its idempotency key, ready to insert."""

    message_id: str
    user_id: int
    number_of_items: int
    total_amount: Decimal

    def as_values(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "user_id": self.user_id,
            "number_of_items": self.number_of_items,
            "total_amount": self.total_amount,
        }


class InvalidMessage(Exception):
    """The body can never become an order; `details` says which field and why."""

    def __init__(self, message: str, details: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + ": " + "; ".join(f"{field}: {reason}" for field, reason in self.details)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


# JSON numbers arrive as Decimal, never float, so 0.1 stays exactly 0.1; NaN and Infinity are refused.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def parse_order(body: bytes, message_id: str) -> OrderRow:
    """The order in a message body, or InvalidMessage."""
    try:
        document = _DECODER.decode(body.decode("utf-8"))
    except ValueError as exc:  # also UnicodeDecodeError: the body is not UTF-8 text
        raise InvalidMessage(f"body is not JSON ({exc})") from None
    except RecursionError:
        raise InvalidMessage("body is nested too deeply to be an order") from None
    if not isinstance(document, dict):
        raise InvalidMessage(f"body is a JSON {type(document).__name__}, not an object")
    try:
        order = OrderMessage.model_validate(document)
    except ValidationError as exc:
        raise InvalidMessage("invalid order", _details(exc)) from None
    return OrderRow(
        message_id=message_id,
        user_id=order.user_id,
        number_of_items=order.number_of_items,
        total_amount=order.total_amount,
    )


def _details(exc: ValidationError) -> tuple[tuple[str, str], ...]:
    # A union reports one error per alternative; an operator wants one line per field.
    reasons: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "body"
        if error["type"] == "extra_forbidden":
            reason = "unknown field"
        elif error["type"] == "missing":
            reason = "missing"
        elif len(error["loc"]) > 1:
            reason = _EXPECTED.get(field, error["msg"])
        else:
            reason = error["msg"]
        if reason not in reasons.setdefault(field, []):
            reasons[field].append(reason)
    return tuple((field, " / ".join(found)) for field, found in reasons.items())


_EXPECTED = {
    "user_id": "must be a non-negative integer (JSON integer or string of digits)",
    "number_of_items": "must be a non-negative integer (JSON integer or string of digits)",
    "total_amount": "must be a non-negative decimal (JSON number or decimal string)",
}
