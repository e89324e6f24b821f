"""What the inventory accepts from clients: request bodies and list parameters, validated by pydantic."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .models import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH

# PostgreSQL bigint: larger ids cannot exist, so they are bad input rather than a database error.
MAX_ID = 2**63 - 1
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100



def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold U+0000: refuse it here, as bad input, rather than fail in the driver.
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return text


Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH), AfterValidator(_no_nul)
]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX_LENGTH), AfterValidator(_no_nul)]


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
    """`GET /api/movies` parameters: keyset pagination on id (`after`), so deep pages stay cheap."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(max_length=TITLE_MAX_LENGTH), AfterValidator(_no_nul)] = ""
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE
    after: Annotated[int, Field(ge=0, le=MAX_ID)] = 0
