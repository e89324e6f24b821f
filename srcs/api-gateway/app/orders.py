"""Placing an order: its message id, its canonical message, and the broker's confirm."""

from __future__ import annotations

import hashlib
import logging
import uuid

from crud_common.billing import encode_order
from crud_common.errors import ApiError

from .metrics import GatewayMetrics
from .publisher import BrokerUnavailable, Publisher
from .schemas import OrderRequest

log = logging.getLogger(__name__)


def message_id(key: str | None, message: bytes) -> str:
    """The id the consumer stores the order under, once.

    Without an Idempotency-Key, a new one. With one, the id is derived from the key *and* the canonical order, so
    a retry (same key, same order) is the same message and is stored once, while the same key sent with another
    order is another message and is stored too: a reused key can never make the gateway answer 200 for an order
    that is then dropped as a duplicate.
    """
    if key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(key.encode() + b"\n" + message).hexdigest()[:32]


def place_order(publisher: Publisher, order: OrderRequest, key: str | None, request_id: str,
                metrics: GatewayMetrics) -> str:
    """Publish the order and return its message id once the broker confirmed it is on disk; a 503 otherwise.
    The request id travels as the message's correlation id, and is stored with the order."""
    message = encode_order(order)
    order_id = message_id(key, message)
    try:
        publisher.publish(message, message_id=order_id, correlation_id=request_id)
    except BrokerUnavailable as exc:
        metrics.publishes.labels("refused" if exc.refused else "failed").inc()
        log.warning("order %s not published: %s", order_id, exc)
        raise ApiError(503, "the billing queue cannot take the order now, try again later") from None
    metrics.publishes.labels("confirmed").inc()
    log.info("order %s published", order_id)
    return order_id
