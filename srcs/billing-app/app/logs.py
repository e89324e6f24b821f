"""The consumer's logging: one line per record on stdout, control characters escaped (as the HTTP services')."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

# C0 and C1 controls, and the two Unicode line separators some viewers break lines on.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_CHARACTERS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class EscapingFormatter(logging.Formatter):
    """A record is one line, whatever it quotes (a field name from a message body, say): control characters
    become \\xNN escapes. A traceback keeps its lines, each indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return _CONTROL_CHARACTERS.sub(_escaped, super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return "\n".join(
            "    " + _CONTROL_CHARACTERS_BUT_NEWLINE.sub(_escaped, line)
            for line in super().formatException(ei).splitlines()
        )


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
