"""Loopback operator endpoint: GET /health (is the consumer connected, is the database reachable) and GET /metrics.

A stdlib ThreadingHTTPServer in a daemon thread: it only reads state, so the consumer thread never waits on it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crud_common.errors import code_for, error_json
from crud_common.request_ids import new_request_id, request_id_from
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics

log = logging.getLogger("billing.status")


class StatusServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        consumer_connected: Callable[[], bool],
        database_reachable: Callable[[], bool],
    ) -> None:
        self._httpd = ThreadingHTTPServer((host, port), _handler(metrics, consumer_connected, database_reachable))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="billing-status", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        log.info("status endpoint on http://%s:%d (/health, /metrics)", *self.address)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(
    metrics: Metrics, consumer_connected: Callable[[], bool], database_reachable: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "billing-app"
        sys_version = ""
        _rid = ""

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/health":
                connected, reachable = consumer_connected(), database_reachable()
                healthy = connected and reachable
                self._json(
                    HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
                    {
                        "status": "ok" if healthy else "unavailable",
                        "consumer_connected": connected,
                        "database_reachable": reachable,
                    },
                )
            elif path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no resource at {path[:80]}")

        def do_HEAD(self) -> None:  # noqa: N802
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD  # noqa: N815

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._send(status, "application/json", error_json(code_for(status), message, self._rid))

        def _json(self, status: HTTPStatus, document: dict[str, object]) -> None:
            self._send(status, "application/json", json.dumps(document).encode())

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-ID", self._rid)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def parse_request(self) -> bool:
            ok = super().parse_request()
            self._rid = request_id_from(self.headers.get("X-Request-ID")) if ok else new_request_id()
            return ok

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # http.server's own errors (malformed request, unknown method) in the platform's JSON shape.
            if code == HTTPStatus.NOT_IMPLEMENTED:
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served")
            else:
                self._error(HTTPStatus.BAD_REQUEST, message or "malformed request")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
