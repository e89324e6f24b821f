"""Where orders are written: one short transaction per batch, owned here; the data function is app/orders.py."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from crud_common.logs import one_line
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import sessionmaker

from .orders import insert_orders
from .schemas import OrderRow

log = logging.getLogger("billing.store")


@dataclass(frozen=True)
class Stored:
    """What one write did with a batch: the message ids it inserted, and those the database refused (with why).
    The others were stored already (redeliveries)."""

    inserted: frozenset[str]
    refused: Mapping[str, str] = field(default_factory=dict)


class OrderStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine)

    def write(self, rows: Sequence[OrderRow]) -> Stored:
        """One INSERT and one commit; a batch the database refuses is written again row by row, in savepoints,
        to find the culprits instead of retrying the whole batch forever. Raises SQLAlchemyError when the
        database itself is unavailable: then nothing was stored."""
        try:
            with self._sessions.begin() as session:
                return Stored(frozenset(insert_orders(session, rows)))
        except (DataError, IntegrityError) as exc:
            # Validation should make this impossible.
            log.error("the database refused a batch of %d (%s); storing its orders one by one", len(rows),
                      one_line(exc))
        inserted: set[str] = set()
        refused: dict[str, str] = {}
        with self._sessions.begin() as session:
            for row in rows:
                try:
                    with session.begin_nested():
                        inserted |= insert_orders(session, [row])
                except (DataError, IntegrityError) as exc:
                    refused[row.message_id] = one_line(exc)
        return Stored(frozenset(inserted), refused)

    def reachable(self) -> bool:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not reachable" to an operator
            return False
