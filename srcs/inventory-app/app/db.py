"""Database binding: one engine per process, one session per request, owned by the request."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from .config import Config


class Base(DeclarativeBase):
    pass


class Database:
    """The service's SQLAlchemy engine and session factory, bound to a Flask app in the factory."""

    def __init__(self, config: Config) -> None:
        self.engine: Engine = create_engine(
            config.database_url,
            # Connections die when PostgreSQL restarts; ping before use so a request never gets a dead one.
            pool_pre_ping=True,
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
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def init_app(self, app: Flask) -> None:
        app.extensions["database"] = self
        app.teardown_appcontext(_close_request_session)


def request_session() -> Session:
    """The current request's session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        database: Database = current_app.extensions["database"]
        g.db_session = database.sessions()
    return g.db_session


def _close_request_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
