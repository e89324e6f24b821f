"""Request ids and the access log: one line per request with method, path, status, duration, request id."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

access_log = logging.getLogger("inventory.access")

# A client-supplied id is echoed in logs and headers, so only a short, plain token is trusted.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(header_value: str | None) -> str:
    if header_value and _REQUEST_ID_PATTERN.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


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
