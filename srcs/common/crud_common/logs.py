"""The services' logging: one escaped line per record on stdout, written in batches."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# C0 and C1 controls, and the two Unicode line separators some viewers break lines on.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_CHARACTERS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class EscapingFormatter(logging.Formatter):
    """A record is one line, whatever it quotes: control characters in its message (a path with %0A, a NUL
    byte, a field name from a message body) are written as \\xNN escapes, so nothing a client sends can forge or
    corrupt a log line. A traceback keeps its lines, each indented, so that none can pass for a record."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return _CONTROL_CHARACTERS.sub(_escaped, super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("    " + _CONTROL_CHARACTERS_BUT_NEWLINE.sub(_escaped, line) for line in text.splitlines())


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes its lines in batches: at most every `interval_s`, at once for WARNING and
    above, and when the process exits.

    Under PM2, a service's stdout is a socket to the PM2 daemon, which does work for every write it receives: one
    access line per request, written one by one, is a measurable share of a request's cost (bench/README.md,
    "gateway and inventory: log lines written to stdout in batches"). Batched, the same lines arrive in a few
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


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a log: its type and the first line of its text, those of the cause a
    wrapper carries (SQLAlchemy's `orig`, urllib3's `reason`) when it has one."""
    cause = next((inner for inner in (getattr(exc, "orig", None), getattr(exc, "reason", None))
                  if isinstance(inner, BaseException)), exc)
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def configure_logging(level: int | str = logging.INFO) -> None:
    """The process's logging: one escaped line per record on stdout, in batches. pika narrates every connection
    step, and logs an expected reconnect (an idle connection the broker dropped) as an ERROR with a traceback;
    the services log each of those events themselves, in one line, so pika's own logs are kept to the critical."""
    handler = BatchingStreamHandler(sys.stdout)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
