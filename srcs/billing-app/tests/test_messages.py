"""The pure validation of a message body: what an order may look like (the contract's rules)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.messages import BIGINT_MAX, INTEGER_MAX, InvalidMessage, parse_order

from .support import order


def test_strings_and_numbers_are_both_accepted():
    row = parse_order(b'{"user_id": "3", "number_of_items": "5", "total_amount": "180"}', "m1")
    assert (row.message_id, row.user_id, row.number_of_items, row.total_amount) == ("m1", 3, 5, Decimal("180"))
    row = parse_order(b'{"user_id": 3, "number_of_items": 5, "total_amount": 180.25}', "m2")
    assert (row.user_id, row.number_of_items, row.total_amount) == (3, 5, Decimal("180.25"))


def test_json_numbers_are_read_as_exact_decimals():
    assert parse_order(order(total_amount=0.1), "m").total_amount == Decimal("0.1")
    assert parse_order(b'{"user_id": 1, "number_of_items": 1, "total_amount": 1e2}', "m").total_amount == 100


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0", Decimal("0")),
        ("0.5", Decimal("0.5")),
        ("12.34", Decimal("12.34")),
        ("9999999999.99", Decimal("9999999999.99")),
        (7, Decimal("7")),
        (0, Decimal("0")),
    ],
)
def test_valid_amounts(amount, expected):
    assert parse_order(order(total_amount=amount), "m").total_amount == expected


@pytest.mark.parametrize(
    "amount",
    ["12.345", 12.345, "-1", -1, -0.01, "1e3", "NaN", "Infinity", " 1", "1 ", "1,5", "", ".5", "5.", "+5",
     "99999999999.99", True, False, None, [], {}],
)
def test_invalid_amounts(amount):
    with pytest.raises(InvalidMessage) as caught:
        parse_order(order(total_amount=amount), "m")
    assert [field for field, _ in caught.value.details] == ["total_amount"]


@pytest.mark.parametrize("field", ["user_id", "number_of_items"])
@pytest.mark.parametrize(
    "value", [-1, "-1", " 1", "1 ", "+1", "1.0", 1.0, 1.5, "1e2", "1_000", "", "abc", True, False, None, [1], {}]
)
def test_invalid_whole_numbers(field, value):
    with pytest.raises(InvalidMessage) as caught:
        parse_order(order(**{field: value}), "m")
    assert [name for name, _ in caught.value.details] == [field]


def test_bounds_are_the_columns():
    assert parse_order(order(user_id=BIGINT_MAX, number_of_items=INTEGER_MAX), "m").user_id == BIGINT_MAX
    assert parse_order(order(user_id=str(BIGINT_MAX)), "m").user_id == BIGINT_MAX
    with pytest.raises(InvalidMessage):
        parse_order(order(user_id=BIGINT_MAX + 1), "m")
    with pytest.raises(InvalidMessage):
        parse_order(order(user_id=str(BIGINT_MAX + 1)), "m")
    with pytest.raises(InvalidMessage):
        parse_order(order(number_of_items=INTEGER_MAX + 1), "m")
    with pytest.raises(InvalidMessage):
        parse_order(order(user_id="9" * 5000), "m")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"user_id": NaN, "number_of_items": 1, "total_amount": 1}', "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (b"null", "not an object"),
        (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
        (b'{"user_id": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "nested too deeply"),
    ],
)
def test_bodies_that_are_not_an_object(body, says):
    with pytest.raises(InvalidMessage, match=says):
        parse_order(body, "m")


def test_missing_and_unknown_fields_are_named():
    with pytest.raises(InvalidMessage) as caught:
        parse_order(b'{"user_id": 1, "total_amount": "2", "coupon": "X"}', "m")
    assert dict(caught.value.details) == {"number_of_items": "missing", "coupon": "unknown field"}
    assert "number_of_items: missing" in str(caught.value)
