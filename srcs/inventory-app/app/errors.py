"""The inventory's own failures, as the platform's errors (the shape itself and every other handler are
crud_common's): the database, not the client, is the problem."""

from __future__ import annotations

import logging

from crud_common.errors import ApiError, field_error
from crud_common.logs import one_line
from flask import current_app
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeoutError

from .movies import QUERY_CANCELED, SearchTooBroad

log = logging.getLogger(__name__)


def database_unavailable(exc: Exception) -> ApiError:
    # Connection refused, timeouts, statement timeout, an exhausted pool.
    log.warning("database unavailable: %s", one_line(exc))
    count_database_failure(exc)
    return ApiError(503, "the database is unavailable, try again later")


def count_database_failure(exc: Exception) -> None:
    current_app.extensions["metrics"].database_errors.labels(failure_kind(exc)).inc()


def failure_kind(exc: Exception) -> str:
    """The label the failure is counted under (app/metrics.py, DATABASE_FAILURES)."""
    if isinstance(exc, PoolTimeoutError):
        return "pool_exhausted"
    if getattr(getattr(exc, "orig", None), "pgcode", None) == QUERY_CANCELED:
        return "statement_timeout"
    return "unavailable"


def search_too_broad(_exc: Exception) -> ApiError:
    # The client's term, not the database, is the problem: a 400 that says what to change.
    return field_error("title", "matches too many titles to search in time: use a longer or more specific text")


DATABASE_ERRORS = {DBAPIError: database_unavailable, PoolTimeoutError: database_unavailable,
                   SearchTooBroad: search_too_broad}
