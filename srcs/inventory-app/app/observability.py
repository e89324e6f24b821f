"""Request ids and the access log: one line per request with method, path, status, duration, request id."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from flask import Flask, Response, g, request

access_log = logging.getLogger("inventory.access")

# A client-supplied id is echoed in logs and headers, so only a short, plain token is trusted.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(header_value: str | None) -> str:
    if header_value and _REQUEST_ID_PATTERN.fullmatch(header_value):
        return header_value
    return new_request_id()


def new_request_id() -> str:
    """32 hex digits, unique: a random prefix per process and a counter (a uuid4 costs a syscall per request)."""
    return f"{_process_prefix}{next(_counter):016x}"


def _new_process_prefix() -> None:
    global _process_prefix, _counter
    _process_prefix, _counter = os.urandom(8).hex(), itertools.count()


_process_prefix, _counter = "", itertools.count()
_new_process_prefix()
# gunicorn forks its workers after importing the app: each must draw a prefix of its own.
os.register_at_fork(after_in_child=_new_process_prefix)


def init_request_logging(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # Errors raised before _start (none today) would lack these; fall back rather than fail.
        request_id = g.get("request_id") or request_id_from(None)
        response.headers["X-Request-ID"] = request_id
        duration_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        access_log.info(
            "%s %s %s %.1fms request_id=%s",
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            duration_ms,
            request_id,
        )
        return response
