"""Data functions for movies. The caller owns the connection.

Each function is one SQL statement, run in autocommit (app/db.py): a statement is its own transaction, so no
request needs a BEGIN and a COMMIT or ROLLBACK around it. Updates are a single UPDATE ... RETURNING, never a
read followed by a write. Rows come back as plain data (`MovieData`), not ORM objects: an answer needs nothing
more, and building objects is most of the cost of a page of 100 movies (bench/README.md,
"inventory: every request one statement").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Integer, Text, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import DBAPIError

from .models import Movie, MovieData

_COLUMNS = (Movie.id, Movie.title, Movie.description)


def _contains_pattern(text: str) -> str:
    # The search is a substring match: LIKE's own wildcards in the user's text are literal characters.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# PostgreSQL's SQLSTATE for a statement it cancelled (statement_timeout).
QUERY_CANCELED = "57014"


class SearchTooBroad(Exception):
    """A title search PostgreSQL cancelled at the search timeout: the term's trigrams are in too many titles for
    the index to narrow it down (e.g. "the the": every title has "the", few hold "the the")."""


@contextmanager
def _search_bound(connection: Connection, timeout_ms: int) -> Iterator[None]:
    """The statements inside get the search's own, shorter timeout, then the session's default again (RESET: the
    statement timeout the connection was opened with)."""
    connection.exec_driver_sql(f"SET statement_timeout = {int(timeout_ms)}")
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) == QUERY_CANCELED:
            raise SearchTooBroad() from None
        raise
    finally:
        if not connection.invalidated:
            connection.exec_driver_sql("RESET statement_timeout")


def _movie(row: Sequence[Any]) -> MovieData:
    return {"id": row[0], "title": row[1], "description": row[2]}


# The statements of the hot paths are built once, with bound parameters: building one for every request costs
# more than executing it (bench/README.md, "inventory: the request owns a Core `Connection`").
_PAGE = (
    select(*_COLUMNS).where(Movie.id > bindparam("after")).order_by(Movie.id).limit(bindparam("limit", type_=Integer))
)
_PAGE_WITH_TITLE = _PAGE.where(Movie.title.ilike(bindparam("pattern"), escape="\\"))


def _json_batch(page: Any) -> Any:
    """One batch of the streamed list: PostgreSQL writes each movie's JSON object and joins them with commas, so
    a batch reaches Python as a single text value, however many movies it holds."""
    movies = page.subquery("m")
    as_json = func.row_to_json(movies.table_valued()).cast(Text)
    return select(
        func.string_agg(as_json, aggregate_order_by(literal_column("','"), movies.c.id)),
        func.count(),
        func.max(movies.c.id),
    )


_JSON_BATCH = _json_batch(_PAGE)
_JSON_BATCH_WITH_TITLE = _json_batch(_PAGE_WITH_TITLE)
_PING = select(literal_column("1"))
_BY_ID = select(*_COLUMNS).where(Movie.id == bindparam("id"))
_DELETE_BY_ID = delete(Movie).where(Movie.id == bindparam("id"))


def list_movies(connection: Connection, *, title: str, after: int, limit: int,
                search_timeout_ms: int) -> list[MovieData]:
    """Up to `limit` movies with id > `after`, in id order, whose title contains `title` (any case); a search
    that takes longer than `search_timeout_ms` is SearchTooBroad."""
    if title:
        pattern = _contains_pattern(title)
        with _search_bound(connection, search_timeout_ms):
            rows = connection.execute(_PAGE_WITH_TITLE, {"after": after, "limit": limit, "pattern": pattern}).all()
    else:
        rows = connection.execute(_PAGE, {"after": after, "limit": limit})
    return [_movie(row) for row in rows]


@dataclass(frozen=True)
class JsonBatch:
    """Up to `limit` movies as JSON objects separated by commas (`json`), how many, and the last one's id."""

    json: str
    count: int
    last_id: int


def json_batch(connection: Connection, *, title: str, after: int, limit: int,
               search_timeout_ms: int) -> JsonBatch:
    """The movies `list_movies` would return, already encoded by PostgreSQL (the row_to_json of id, title,
    description: the same object, key order and escapes as the API's JSON)."""
    if title:
        parameters = {"after": after, "limit": limit, "pattern": _contains_pattern(title)}
        with _search_bound(connection, search_timeout_ms):
            row = connection.execute(_JSON_BATCH_WITH_TITLE, parameters).one()
    else:
        row = connection.execute(_JSON_BATCH, {"after": after, "limit": limit}).one()
    text, count, last_id = row
    return JsonBatch(text or "", count, last_id or after)


def find_movie(connection: Connection, movie_id: int) -> MovieData | None:
    row = connection.execute(_BY_ID, {"id": movie_id}).first()
    return _movie(row) if row is not None else None


def create_movie(connection: Connection, *, title: str, description: str) -> MovieData:
    row = connection.execute(insert(Movie).values(title=title, description=description).returning(*_COLUMNS)).one()
    return _movie(row)


def update_movie(connection: Connection, movie_id: int, changes: dict[str, str]) -> MovieData | None:
    """The movie with `changes` applied, or None if there is no such movie."""
    row = connection.execute(
        update(Movie).where(Movie.id == movie_id).values(**changes).returning(*_COLUMNS)
    ).first()
    return _movie(row) if row is not None else None


def delete_movie(connection: Connection, movie_id: int) -> bool:
    return connection.execute(_DELETE_BY_ID, {"id": movie_id}).rowcount > 0


def delete_all_movies(connection: Connection) -> int:
    return connection.execute(delete(Movie)).rowcount


def ping(connection: Connection) -> None:
    """The cheapest statement: does the database answer at all (GET /health)."""
    connection.execute(_PING)
