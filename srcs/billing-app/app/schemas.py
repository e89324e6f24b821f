"""What the billing consumer receives: a billing message, decoded by the contract (crud_common.billing) into the
row it stores under the message's id, with the request id that placed it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from crud_common.billing import InvalidOrder, decode_order

_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class OrderRow:
    """An order ready to insert: the contract's fields, its idempotency key, and the request that placed it."""

    message_id: str
    user_id: int
    number_of_items: int
    total_amount: Decimal
    request_id: str | None = None

    def as_values(self) -> dict[str, object]:
        return {"message_id": self.message_id, "user_id": self.user_id, "number_of_items": self.number_of_items,
                "total_amount": self.total_amount, "request_id": self.request_id}


def order_row(body: bytes, message_id: object, correlation_id: object = None) -> OrderRow:
    """The row of a billing message, or InvalidOrder (which dead-letters it). The message's correlation id is the
    gateway's request id."""
    order = decode_order(body)
    return OrderRow(_stored_message_id(message_id), order.user_id, order.number_of_items, order.total_amount,
                    _stored_request_id(correlation_id))


def _stored_message_id(message_id: object) -> str:
    """The idempotency key as it will be stored: text PostgreSQL accepts (pika hands over bytes when the
    producer's id was not UTF-8; AMQP already bounds it to 255 bytes)."""
    if not isinstance(message_id, str):
        raise InvalidOrder("message_id is not UTF-8 text")
    if _CONTROL_CHARACTER.search(message_id):
        raise InvalidOrder("message_id holds a control character")
    return message_id


def _stored_request_id(correlation_id: object) -> str | None:
    """The request id as it will be stored, or none: it only traces the order, so one that is not plain text (a
    producer other than the gateway) is left out instead of refusing the order."""
    if not isinstance(correlation_id, str) or not correlation_id or _CONTROL_CHARACTER.search(correlation_id):
        return None
    return correlation_id
