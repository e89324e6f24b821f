"""Database binding: one engine per process, one connection per request, owned by the request, in autocommit.

The request holds a Core `Connection`, not an ORM `Session`: every data function is a single statement returning
plain rows, so the session's unit of work (identity map, flush, its per-transaction bookkeeping) would be pure
cost (bench/README.md, "inventory: the request owns a Core `Connection`"). Routes call a data function through
`read` or `write`, which hand it the request's connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

from .config import Config


P = ParamSpec("P")
T = TypeVar("T")


class Base(DeclarativeBase):
    pass


class Database:
    """The service's SQLAlchemy engine, bound to a Flask app in the factory."""

    def __init__(self, config: Config) -> None:
        self.engine: Engine = config.database.engine(
            application_name="inventory-app",
            connect_timeout_s=config.db_connect_timeout_s,
            statement_timeout_ms=config.db_statement_timeout_ms,
            # No ping before each use: it is an extra round trip on every request. A connection that died while
            # pooled (PostgreSQL restarted) fails its first statement instead; SQLAlchemy then invalidates the
            # whole pool, and reads are retried once on a fresh connection (`read`).
            pool_pre_ping=False,
            # Connections older than this are replaced on checkout, so none outlives a server-side idle timeout.
            pool_recycle=1800,
            # Every request is one statement (app/movies.py), its own transaction: one round trip, where an
            # explicit transaction would add a BEGIN and a COMMIT or ROLLBACK.
            isolation_level="AUTOCOMMIT",
            # One connection per gunicorn thread, so requests never queue for the pool in normal load.
            pool_size=config.server.threads,
            max_overflow=2,
            pool_timeout=config.db_pool_timeout_s,
        )

    def init_app(self, app: Flask) -> None:
        app.extensions["database"] = self
        app.teardown_appcontext(_close_request_connection)


def request_connection() -> Connection:
    """The current request's connection, checked out of the pool on first use and returned when the request ends."""
    if "db_connection" not in g:
        database: Database = current_app.extensions["database"]
        g.db_connection = database.engine.connect()
    return g.db_connection


def read(query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`query(connection, *args, **kwargs)` on the request's connection. If that connection turns out to have
    died while pooled (PostgreSQL restarted since it was last used), the query runs once more on a fresh one: a
    read can be repeated safely. A database that is really down still raises, and becomes a 503."""
    try:
        return query(request_connection(), *args, **kwargs)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    _close_request_connection(None)
    return query(request_connection(), *args, **kwargs)


def write(statement: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`statement(connection, *args, **kwargs)` on the request's connection, once: a write that may have reached
    the database is never repeated (a dead connection is a 503 the client may retry)."""
    return statement(request_connection(), *args, **kwargs)


def _close_request_connection(_exc: BaseException | None) -> None:
    connection: Connection | None = g.pop("db_connection", None)
    if connection is not None:
        connection.close()
