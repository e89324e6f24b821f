"""Data functions for movies. The caller owns the session.

Each function is one SQL statement, run in autocommit (app/db.py): a statement is its own transaction, so no
request needs a BEGIN and a COMMIT or ROLLBACK around it. Updates are a single UPDATE ... RETURNING, never a
read followed by a write. Rows come back as plain data (`MovieData`), not ORM objects: an answer needs nothing
more, and building objects was most of the cost of a page of 100 movies (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from .models import Movie, MovieData

_COLUMNS = (Movie.id, Movie.title, Movie.description)


def _contains_pattern(text: str) -> str:
    # The search is a substring match: LIKE's own wildcards in the user's text are literal characters.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _movie(row: Sequence[Any]) -> MovieData:
    return {"id": row[0], "title": row[1], "description": row[2]}


def list_movies(session: Session, *, title: str, after: int, limit: int) -> list[MovieData]:
    """Up to `limit` movies with id > `after`, in id order, whose title contains `title` (any case)."""
    query = select(*_COLUMNS).where(Movie.id > after).order_by(Movie.id).limit(limit)
    if title:
        query = query.where(Movie.title.ilike(_contains_pattern(title), escape="\\"))
    return [_movie(row) for row in session.execute(query)]


def find_movie(session: Session, movie_id: int) -> MovieData | None:
    row = session.execute(select(*_COLUMNS).where(Movie.id == movie_id)).first()
    return _movie(row) if row is not None else None


def create_movie(session: Session, *, title: str, description: str) -> MovieData:
    row = session.execute(insert(Movie).values(title=title, description=description).returning(*_COLUMNS)).one()
    return _movie(row)


def update_movie(session: Session, movie_id: int, changes: dict[str, str]) -> MovieData | None:
    """The movie with `changes` applied, or None if there is no such movie."""
    row = session.execute(
        update(Movie).where(Movie.id == movie_id).values(**changes).returning(*_COLUMNS)
    ).first()
    return _movie(row) if row is not None else None


def delete_movie(session: Session, movie_id: int) -> bool:
    return session.execute(delete(Movie).where(Movie.id == movie_id)).rowcount > 0


def delete_all_movies(session: Session) -> int:
    return session.execute(delete(Movie)).rowcount
