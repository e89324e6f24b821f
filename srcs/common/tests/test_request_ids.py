"""Request ids: the client's when plain, else new and unique, across forked workers too."""

from __future__ import annotations

import os

import pytest

from crud_common.request_ids import new_request_id, request_id_from


@pytest.mark.parametrize("given", ["abc-123", "client-chosen.id:1", "x" * 128])
def test_a_plain_client_id_is_kept(given):
    assert request_id_from(given) == given


@pytest.mark.parametrize("given", [None, "", "bad id", "<script>", "x" * 129, "a\nb"])
def test_anything_else_is_replaced(given):
    made = request_id_from(given)
    assert made != given and len(made) == 32


def test_made_ids_are_unique_within_and_across_forked_processes():
    made = [new_request_id() for _ in range(1000)]
    assert len(set(made)) == 1000
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # as a gunicorn worker is forked from the master that imported the app
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(reader, 64).decode()[:16] != new_request_id()[:16]
