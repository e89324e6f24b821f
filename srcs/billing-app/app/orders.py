"""Data functions on orders; the caller owns the session and its transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from .messages import OrderRow
from .models import Order


def insert_orders(session: Session, rows: Sequence[OrderRow]) -> set[str]:
    """Insert the rows in one statement, skipping message ids already stored; return the ids inserted."""
    if not rows:
        return set()
    statement = (
        insert(Order)
        .values([row.as_values() for row in rows])
        .on_conflict_do_nothing(index_elements=[Order.message_id])
        .returning(Order.message_id)
    )
    return set(session.scalars(statement))
