"""What clients send the gateway: an order (the billing contract's fields, crud_common.billing) and its
Idempotency-Key."""

from __future__ import annotations

import re

from crud_common.billing import OrderFields
from crud_common.errors import field_error

# What a client's POST /api/billing body must be: exactly the contract's order.
OrderRequest = OrderFields

# Idempotency keys end up in AMQP properties and logs: visible ASCII only.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def idempotency_key(header: str | None) -> str | None:
    """The Idempotency-Key header's value, None without one, or a 400 naming it."""
    if header is not None and not _IDEMPOTENCY_KEY.fullmatch(header):
        raise field_error("Idempotency-Key", "must be 1 to 128 visible ASCII characters")
    return header
