"""The inventory's own failures, as the platform's errors (the shape itself and every other handler are
crud_common's): the database, not the client, is the problem."""

from __future__ import annotations

import logging

from crud_common.errors import ApiError
from crud_common.logs import one_line
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)


def database_unavailable(exc: Exception) -> ApiError:
    # Connection refused, timeouts, statement timeout, an exhausted pool.
    log.warning("database unavailable: %s", one_line(exc))
    return ApiError(503, "the database is unavailable, try again later")


DATABASE_ERRORS = {DBAPIError: database_unavailable, PoolTimeoutError: database_unavailable}
