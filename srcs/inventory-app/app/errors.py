"""The inventory's own failures, as the platform's errors (the shape itself and every other handler are
crud_common's): the database, not the client, is the problem."""

from __future__ import annotations

import logging

from crud_common.errors import ApiError
from crud_common.logs import one_line
from flask import current_app
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeoutError

# PostgreSQL's SQLSTATE for a statement it cancelled (statement_timeout).
QUERY_CANCELED = "57014"

log = logging.getLogger(__name__)


def database_unavailable(exc: Exception) -> ApiError:
    # Connection refused, timeouts, statement timeout, an exhausted pool.
    log.warning("database unavailable: %s", one_line(exc))
    current_app.extensions["metrics"].database_errors.labels(failure_kind(exc)).inc()
    return ApiError(503, "the database is unavailable, try again later")


def failure_kind(exc: Exception) -> str:
    """The label the failure is counted under (app/metrics.py, DATABASE_FAILURES)."""
    if isinstance(exc, PoolTimeoutError):
        return "pool_exhausted"
    if getattr(getattr(exc, "orig", None), "pgcode", None) == QUERY_CANCELED:
        return "statement_timeout"
    return "unavailable"


DATABASE_ERRORS = {DBAPIError: database_unavailable, PoolTimeoutError: database_unavailable}
