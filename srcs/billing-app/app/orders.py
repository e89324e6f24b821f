"""Data functions on orders; the caller owns the session and its transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from .schemas import OrderRow
from .models import Order


# One statement for every batch: SQLAlchemy compiles it once and sends each batch's rows as one multi-row
# INSERT ("insertmanyvalues"), where building a VALUES list per batch recompiled it every time.
_INSERT_SKIPPING_STORED = (
    insert(Order.__table__)
    .on_conflict_do_nothing(index_elements=[Order.__table__.c.message_id])
    .returning(Order.__table__.c.message_id)
)


def insert_orders(session: Session, rows: Sequence[OrderRow]) -> set[str]:
    """Insert the rows, skipping message ids already stored; return the ids inserted."""
    if not rows:
        return set()
    return set(session.scalars(_INSERT_SKIPPING_STORED, [row.as_values() for row in rows]))
