"""Log lines: one per record, nothing a client sends can forge or corrupt one; written in batches."""

from __future__ import annotations

import io
import logging

from crud_common.logs import BatchingStreamHandler, EscapingFormatter


def formatted(message: str, *args: object, exc_info: object = None) -> str:
    record = logging.LogRecord("test", logging.INFO, __file__, 1, message, args, exc_info)
    return EscapingFormatter("%(levelname)s %(message)s").format(record)


def test_control_characters_in_a_message_are_escaped():
    line = formatted("GET %s 404", "/x\n2026-12-01 INFO forged\r\x00\x1b[2J\x85\u2028")
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert line == "INFO GET /x\\x0a2026-12-01 INFO forged\\x0d\\x00\\x1b[2J\\x85\\u2028 404"


def test_a_traceback_keeps_its_lines_each_indented():
    try:
        raise ValueError("bad\nINFO forged line\x00")
    except ValueError as exc:
        line = formatted("failed", exc_info=(type(exc), exc, exc.__traceback__))
    first, *rest = line.splitlines()
    assert first == "INFO failed"
    assert rest and all(part.startswith("    ") for part in rest)
    assert "    INFO forged line\\x00" in rest


def test_lines_are_written_in_batches_and_at_once_for_a_warning():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval_s=3600)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "one", (), None))
    handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "two", (), None))
    assert stream.getvalue() == ""
    handler.emit(logging.LogRecord("t", logging.WARNING, __file__, 1, "three", (), None))
    assert stream.getvalue() == "one\ntwo\nthree\n"
