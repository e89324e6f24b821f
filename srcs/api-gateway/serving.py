"""How this HTTP service is served: its gunicorn worker (gthread, with a stop that drops nothing and errors in
JSON), its request limits, and its logging (one escaped line per record, batched writes to stdout).

Identical in srcs/api-gateway and srcs/inventory-app (the services share no code).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any

import gunicorn.glogging
import gunicorn.util
from gunicorn.workers.gthread import TConn, ThreadWorker

# What the HTTP server accepts of a request, the same on both services (gunicorn's defaults, made explicit): the
# gateway checks that what it forwards to the inventory stays within them (app/proxy.py), so a request the
# gateway accepted is never refused behind it.
REQUEST_LIMITS = {"limit_request_line": 8190, "limit_request_fields": 100, "limit_request_field_size": 8190}

# The platform's error codes for the statuses gunicorn itself answers (requests it cannot parse).
_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error, but the body is the platform's JSON error shape instead of an HTML page."""
    request_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "error": _ERROR_CODES.get(status_int, "bad_request"),
            "message": mesg or reason or HTTPStatus(status_int).phrase,
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n\r\n"
    ).encode("latin-1")
    gunicorn.util.write_nonblock(sock, head + body)


class DrainingThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes.

    A graceful stop serves every connection the kernel already queued. gthread stops accepting on SIGTERM yet
    keeps its listening socket open until its last request is done; the connections that queue meanwhile are
    reset when it finally closes, so under load a `pm2 restart` would cut off requests clients had already
    sent. This worker takes the queue and closes the socket at once instead: a client is either served, or
    refused before sending anything (and may safely retry).

    A request gunicorn cannot parse (a request line over the limit, oversized headers, a bad chunk) is answered
    in the platform's JSON error shape, not with gunicorn's HTML page.
    """

    @classmethod
    def setup(cls) -> None:
        # gunicorn calls a worker class's setup() once, in the master, before forking; handle_error() writes
        # its answer through gunicorn.util.write_error, which has no other hook.
        gunicorn.util.write_error = write_json_error

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._serve_queued_then_stop_listening()

    def _serve_queued_then_stop_listening(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except OSError:  # EAGAIN: the queue is empty
                    break
                self.nr_conns += 1
                client.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            # The master closed its copy before signalling (config.yaml: PM2 signals the master alone), so the
            # last worker to get here closes the socket.
            listener.close()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes its lines in batches: at most every `interval_s`, at once for WARNING and
    above, and when the process exits.

    Under PM2, a service's stdout is a socket to the PM2 daemon, which does work for every write it receives:
    one access line per request, written one by one, cost the daemon about a tenth of a millisecond of CPU per
    request, some 10% of the service's own cost (bench/README.md). Batched, the same lines arrive in a few
    writes a second. What a SIGKILL can lose is the last `interval_s` of INFO lines.
    """

    def __init__(self, stream: Any, interval_s: float = 0.2, max_pending: int = 1000) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._start_flusher()
        # A flusher thread does not survive a fork (gunicorn forks its workers): each child starts its own.
        os.register_at_fork(after_in_child=self._start_flusher)

    def _start_flusher(self) -> None:
        self._pending = []
        threading.Thread(target=self._flush_periodically, name="log-flusher", daemon=True).start()

    def _flush_periodically(self) -> None:
        while True:
            time.sleep(self._interval_s)
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            urgent = record.levelno >= logging.WARNING or len(self._pending) >= self._max_pending
        if urgent:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                return
            text, self._pending = "".join(self._pending), []
            self.stream.write(text)
            self.stream.flush()


# C0 and C1 controls, and the two Unicode line separators some viewers break lines on.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_CHARACTERS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class EscapingFormatter(logging.Formatter):
    """A record is one line, whatever it quotes: control characters in its message (a path with %0A, a NUL
    byte) are written as \\xNN escapes, so no request can forge or corrupt a log line. A traceback keeps its
    lines, each indented, so that none of them can pass for a record of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return _CONTROL_CHARACTERS.sub(_escaped, super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        return "\n".join("    " + _CONTROL_CHARACTERS_BUT_NEWLINE.sub(_escaped, line) for line in text.splitlines())


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class GunicornLogger(gunicorn.glogging.Logger):
    """gunicorn's own log (its start, its workers, requests it could not parse), escaped like the service's."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(EscapingFormatter(self.error_fmt, self.datefmt))


def configure_logging(level: int = logging.INFO) -> None:
    """The service's logging: one escaped line per record on stdout, in batches (BatchingStreamHandler says why)."""
    handler = BatchingStreamHandler(sys.stdout)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
