"""The one error shape: codes, bounded details in one wording, the raw WSGI answer."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from crud_common.errors import (
    MAX_DETAILS, ApiError, code_for, error_json, field_error, shorten, validation_details, validation_error, wsgi_error,
)


class Movie(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str
    year: int = 0


def details_of(document: dict) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Movie.model_validate(document)
    return validation_details(caught.value)


def test_every_validation_error_reads_the_same_whoever_validates():
    assert details_of({}) == [{"field": "title", "reason": "is required"}]
    assert details_of({"title": "x", "rating": 5}) == [{"field": "rating", "reason": "unknown field"}]
    assert details_of({"title": 5})[0]["reason"] == "Input should be a valid string"


def test_details_are_at_most_a_few_and_say_how_many_more():
    details = details_of({"title": "x", **{f"extra_{n}": 1 for n in range(40)}})
    assert len(details) == MAX_DETAILS
    assert details[-1]["reason"].endswith("(and 35 more problems not listed)")


def test_long_field_names_and_values_are_cut_short():
    details = details_of({"title": "x", "f" * 500: 1})
    assert len(details[0]["field"]) <= 80 and details[0]["field"].endswith("...")
    assert len(field_error("x" * 300, "bad").message) < 100
    assert shorten("abc") == "abc" and len(shorten("a" * 200)) == 80


def test_a_validation_error_names_each_field_in_its_message():
    with pytest.raises(ValidationError) as caught:
        Movie.model_validate({"year": "x"})
    error = validation_error(caught.value)
    assert (error.status, error.code) == (400, "validation_error")
    assert error.message == "title: is required; year: Input should be a valid integer"


@pytest.mark.parametrize(("status", "code"), [(400, "bad_request"), (404, "not_found"), (431, "request_header_fields_too_large"),
                                              (503, "service_unavailable"), (409, "conflict")])
def test_each_status_has_one_code(status, code):
    assert code_for(status) == code == ApiError(status, "m").code


def test_an_error_outside_flask_has_the_same_shape_and_its_request_id_twice():
    status, headers, body = wsgi_error(ApiError(502, "the inventory is unreachable"), "rid-1")
    assert status == "502 Bad Gateway"
    assert dict(headers) == {"Content-Type": "application/json", "Content-Length": str(len(body)),
                             "X-Request-ID": "rid-1"}
    assert json.loads(body) == {"error": "bad_gateway", "message": "the inventory is unreachable", "request_id": "rid-1"}
    assert body.endswith(b"}\n") and b" " not in body.replace(b"the inventory is unreachable", b"")


def test_error_json_keeps_unicode_readable():
    assert "é".encode() in error_json("not_found", "café", "r")
