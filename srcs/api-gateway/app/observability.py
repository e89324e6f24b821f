"""Request ids and the access log: one line per request with method, path, status, duration, request id
and the upstream the request went to (inventory, rabbitmq or -)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from flask import Flask, Response, g, request

access_log = logging.getLogger("gateway.access")

# A client-supplied id is echoed in logs, headers and AMQP properties, so only a short, plain token is trusted.
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


def mark_upstream(name: str) -> None:
    """Record which dependency this request needed, for the access log."""
    g.upstream = name


def init_request_logging(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # A request rejected before _start ran (e.g. by routing) still gets an id and a log line.
        request_id = g.get("request_id") or request_id_from(request.headers.get("X-Request-ID"))
        g.request_id = request_id
        response.headers["X-Request-ID"] = request_id
        log_access(
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            g.get("started", time.perf_counter()),
            request_id,
            g.get("upstream", "-"),
        )
        return response


def log_access(method: str, target: str, status: int, started: float, request_id: str, upstream: str) -> None:
    """The one access line of a request (Flask's routes and the proxy alike)."""
    access_log.info(
        "%s %s %s %.1fms request_id=%s upstream=%s",
        method,
        target,
        status,
        (time.perf_counter() - started) * 1000,
        request_id,
        upstream,
    )
