"""Database binding: one engine per process, one session per request, owned by the request, in autocommit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from .config import Config


T = TypeVar("T")


class Base(DeclarativeBase):
    pass


class Database:
    """The service's SQLAlchemy engine and session factory, bound to a Flask app in the factory."""

    def __init__(self, config: Config) -> None:
        self.engine: Engine = create_engine(
            config.database_url,
            # No ping before each use: it was an extra round trip on every request (bench/README.md). A connection
            # that died while pooled (PostgreSQL restarted) fails its first statement instead; SQLAlchemy then
            # invalidates the whole pool, and reads are retried once on a fresh connection (`read`).
            pool_pre_ping=False,
            # Connections older than this are replaced on checkout, so none outlives a server-side idle timeout.
            pool_recycle=1800,
            # Every request is one statement (app/movies.py), its own transaction: one round trip, where an
            # explicit transaction would add a BEGIN and a COMMIT or ROLLBACK.
            isolation_level="AUTOCOMMIT",
            # One connection per gunicorn thread, so requests never queue for the pool in normal load.
            pool_size=config.threads,
            max_overflow=2,
            pool_timeout=config.db_pool_timeout_s,
            connect_args={
                "connect_timeout": config.db_connect_timeout_s,
                "options": f"-c statement_timeout={config.db_statement_timeout_ms}",
                "application_name": "inventory-app",
            },
        )
        self.sessions = sessionmaker(self.engine)

    def init_app(self, app: Flask) -> None:
        app.extensions["database"] = self
        app.teardown_appcontext(_close_request_session)


def request_session() -> Session:
    """The current request's session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        database: Database = current_app.extensions["database"]
        g.db_session = database.sessions()
    return g.db_session


def read(query: Callable[[Session], T]) -> T:
    """Run a read-only query with the request's session. If its connection turns out to have died while pooled
    (PostgreSQL restarted since it was last used), the query runs once more on a fresh connection: a read can
    be repeated safely. A database that is really down still raises, and becomes a 503."""
    try:
        return query(request_session())
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    _close_request_session(None)
    return query(request_session())


def _close_request_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
