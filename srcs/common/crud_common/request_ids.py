"""The request id: one per request, in every log line of it, in its answer's X-Request-ID and error body, passed
to the inventory and carried by a published order as its AMQP correlation_id."""

from __future__ import annotations

import itertools
import os
import re

# A client-supplied id is echoed in logs, headers and AMQP properties, so only a short, plain token is trusted.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(header_value: str | None) -> str:
    """The client's X-Request-ID when it is a plain token, else a new id."""
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
