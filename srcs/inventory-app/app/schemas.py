"""What the inventory accepts from clients: request bodies and list parameters, validated by pydantic.

Each rule here is one `openapi.yaml` states: a request the description allows is accepted, one it forbids is
refused, with nothing stricter or looser on either side.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .models import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH

# PostgreSQL bigint: larger ids cannot exist, so they are bad input rather than a database error.
MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 100

_DIGITS = re.compile(r"[0-9]{1,19}")
# A run of three letters or digits: what gives pg_trgm a trigram to look up. A term without one (one or two
# characters, punctuation only) cannot use the title index and would scan every movie.
_SEARCHABLE = re.compile(r"[A-Za-z0-9]{3}")


def _storable_text(text: str) -> str:
    # PostgreSQL text cannot hold U+0000 (JSON can spell it, "\u0000"): bad input here, rather than a failure
    # in the driver. (pydantic itself refuses a lone surrogate such as "\ud800".)
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return text


def _has_visible_character(text: str) -> str:
    # The whitespace of openapi.yaml's pattern (ASCII), not str.isspace(), which JSON Schema's regexes disagree on.
    if not text.strip(" \t\n\v\f\r"):
        raise ValueError("must contain a character other than whitespace")
    return text


def _searchable(term: str) -> str:
    if term and not _SEARCHABLE.search(term):
        raise ValueError("must contain at least 3 letters or digits in a row (a shorter term cannot use the title "
                         "index, and would scan every movie)")
    return term


def _query_integer(value: Any) -> Any:
    # The query string is text: only plain digits are a number ("5.0", "+5", "1_0", " 5" are not).
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in digits")
    return int(value)


Title = Annotated[
    str,
    Field(min_length=1, max_length=TITLE_MAX_LENGTH),
    AfterValidator(_storable_text),
    AfterValidator(_has_visible_character),
]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_LENGTH), AfterValidator(_storable_text)]


class MovieCreate(BaseModel):
    # strict: a number is not a title; forbid: a misspelt field is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    description: Description = ""


class MovieUpdate(BaseModel):
    """A partial update: fields absent from the body keep their value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title | None = None
    description: Description | None = None

    @field_validator("title", "description", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only runs for fields present in the body: absent means "keep", an explicit null is a mistake.
        if value is None:
            raise ValueError("must be a string, not null")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> MovieUpdate:
        if not self.model_fields_set:
            raise ValueError("the body must set at least one of: title, description")
        return self

    def changes(self) -> dict[str, str]:
        return self.model_dump(exclude_unset=True)


class ListQuery(BaseModel):
    """`GET /api/movies` parameters. Without `limit`, every movie after `after` (streamed); with it, one page of
    keyset pagination on id, so deep pages stay cheap."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(max_length=TITLE_MAX_LENGTH), AfterValidator(_storable_text),
                     AfterValidator(_searchable)] = ""
    limit: Annotated[int, BeforeValidator(_query_integer), Field(ge=1, le=MAX_PAGE_SIZE)] | None = None
    after: Annotated[int, BeforeValidator(_query_integer), Field(ge=0, le=MAX_ID)] = 0
