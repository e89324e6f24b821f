"""Data functions for movies. The caller owns the session and the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import Movie


def _contains_pattern(text: str) -> str:
    # The search is a substring match: LIKE's own wildcards in the user's text are literal characters.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_movies(session: Session, *, title: str, after: int, limit: int) -> Sequence[Movie]:
    """Up to `limit` movies with id > `after`, in id order, whose title contains `title` (any case)."""
    query = select(Movie).where(Movie.id > after).order_by(Movie.id).limit(limit)
    if title:
        query = query.where(Movie.title.ilike(_contains_pattern(title), escape="\\"))
    return session.scalars(query).all()


def get_movie(session: Session, movie_id: int) -> Movie | None:
    return session.get(Movie, movie_id)


def create_movie(session: Session, *, title: str, description: str) -> Movie:
    movie = Movie(title=title, description=description)
    session.add(movie)
    session.flush()
    return movie


def update_movie(session: Session, movie: Movie, changes: dict[str, str]) -> Movie:
    for field, value in changes.items():
        setattr(movie, field, value)
    session.flush()
    return movie


def delete_movie(session: Session, movie_id: int) -> bool:
    result = session.execute(delete(Movie).where(Movie.id == movie_id))
    return result.rowcount > 0


def delete_all_movies(session: Session) -> int:
    return session.execute(delete(Movie)).rowcount
