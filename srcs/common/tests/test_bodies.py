"""Reading a body whole, or refusing it with the reason: exact length, size limit, malformed chunks, JSON."""

from __future__ import annotations

import io

import pytest

from crud_common.bodies import NotAJsonObject, is_json, json_object, read_body
from crud_common.errors import ApiError


class BrokenChunks(io.RawIOBase):
    """What gunicorn's body reader does with a malformed chunked body: it raises while reading."""

    def read(self, size: int = -1) -> bytes:
        raise RuntimeError("Invalid chunk size: 'zz'")


def environ(body: bytes | io.RawIOBase, length: str | None = None) -> dict:
    stream = body if isinstance(body, io.RawIOBase) else io.BytesIO(body)
    return {"wsgi.input": stream, **({"CONTENT_LENGTH": length} if length is not None else {})}


def refusal(env: dict, limit: int = 16) -> ApiError:
    with pytest.raises(ApiError) as caught:
        read_body(env, limit)
    return caught.value


def test_a_whole_body_is_read_announced_or_chunked():
    assert read_body(environ(b'{"a": 1}', "8"), 16) == b'{"a": 1}'
    assert read_body(environ(b'{"a": 1}'), 16) == b'{"a": 1}'
    assert read_body(environ(b"", "0"), 16) == b""


def test_a_body_shorter_than_announced_is_refused():
    error = refusal(environ(b'{"a"', "12"))
    assert (error.status, error.details[0]["field"]) == (400, "body")
    assert "shorter than its Content-Length (4 of 12 bytes)" in error.message


@pytest.mark.parametrize(("body", "length"), [(b"x" * 20, "20"), (b"x" * 17, None)])
def test_a_body_over_the_limit_is_413_announced_or_not(body, length):
    assert refusal(environ(body, length)).status == 413


def test_a_malformed_chunked_body_is_a_400_not_a_crash():
    error = refusal(environ(BrokenChunks()))
    assert error.status == 400 and "chunked" in error.message


def test_a_length_that_is_not_a_number_is_refused():
    assert refusal(environ(b"{}", "2x")).details == [{"field": "Content-Length", "reason": "must be a number of bytes"}]


@pytest.mark.parametrize(("content_type", "expected"), [
    ("application/json", True), ("application/json; charset=utf-8", True), ("application/problem+json", True),
    ("APPLICATION/JSON", True), ("text/plain", False), ("application/x-www-form-urlencoded", False), (None, False),
])
def test_what_counts_as_json(content_type, expected):
    assert is_json(content_type) is expected


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{", "is not valid JSON"), (b"", "is not valid JSON"), (b"\xff\xfe", "is not valid JSON"),
    (b"[1]", "must be a JSON object, got list"), (b'{"a": NaN}', "NaN is not a JSON number"),
    (b"[" * 10_000 + b"]" * 10_000, "is nested too deeply"),
])
def test_what_is_not_a_json_object_says_why(raw, reason):
    with pytest.raises(NotAJsonObject) as caught:
        json_object(raw)
    assert reason in caught.value.reason
