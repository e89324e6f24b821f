"""Tables of movies_db. The schema itself is owned by the Alembic migrations under migrations/."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base

TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 5000


class MovieData(TypedDict):
    """A movie as the API shows it."""

    id: int
    title: str
    description: str


class Movie(Base):
    __tablename__ = "movies"
    __table_args__ = (
        CheckConstraint("length(btrim(title)) > 0", name="ck_movies_title_not_blank"),
        # Trigram index: keeps `title ILIKE '%x%'` an index scan on millions of rows.
        Index(
            "ix_movies_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str] = mapped_column(Text, server_default="")
