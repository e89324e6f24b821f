"""Tables of orders_db. The schema itself is owned by the Alembic migrations under migrations/."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Identity, Integer, Numeric, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base


class Order(Base):
    __tablename__ = "orders"
    # The AMQP message id is unique: that is what makes a redelivered message store nothing twice.
    __table_args__ = (UniqueConstraint("message_id", name="uq_orders_message_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    number_of_items: Mapped[int] = mapped_column(Integer)
    total_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    message_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The request id of the POST /api/billing that placed it (its X-Request-ID): a 200 traced to its row.
    request_id: Mapped[str | None] = mapped_column(Text)
