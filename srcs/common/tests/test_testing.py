"""The shared test support: waiting, ports, and a confirmed backlog."""

from __future__ import annotations

import pika
import pytest

from crud_common.testing import NotConfirmed, free_port, http_status, publish_confirmed, wait_for

from .conftest import rabbit_parameters


def test_wait_for_returns_what_the_probe_found_or_names_what_never_happened():
    answers = iter([0, None, "found"])
    assert wait_for("the third answer", lambda: next(answers), every_s=0) == "found"
    with pytest.raises(AssertionError, match="timed out after 0.2s waiting for nothing at all"):
        wait_for("nothing at all", lambda: False, timeout_s=0.2, every_s=0.05)


def test_http_status_is_none_where_nothing_listens():
    assert http_status(f"http://127.0.0.1:{free_port()}/") is None


def test_a_backlog_is_published_and_every_message_confirmed(rabbit, channel):
    queue = channel.queue_declare("", exclusive=True).method.queue
    messages = [(f"m{n}".encode(), pika.BasicProperties(message_id=f"m{n}")) for n in range(2000)]
    publish_confirmed(rabbit_parameters(rabbit), queue, messages)
    assert channel.queue_declare(queue, passive=True).method.message_count == 2000


def test_a_message_no_queue_takes_is_not_confirmed(rabbit):
    with pytest.raises(NotConfirmed, match="returned as unroutable"):
        publish_confirmed(rabbit_parameters(rabbit), "no_such_queue_anywhere", [(b"x", pika.BasicProperties())])
