"""A billing message becomes a row: the contract's order (crud_common.billing, tested in its own suite) under
the message's id, which must be text PostgreSQL can store."""

from __future__ import annotations

from decimal import Decimal

import pytest
from crud_common.billing import InvalidOrder

from app.schemas import OrderRow, order_row

from .support import order


def test_a_message_becomes_the_row_of_its_order_under_its_id():
    row = order_row(b'{"user_id":3,"number_of_items":5,"total_amount":"180.00"}', "m1")
    assert row == OrderRow("m1", 3, 5, Decimal("180.00"))
    assert row.as_values() == {"message_id": "m1", "user_id": 3, "number_of_items": 5,
                               "total_amount": Decimal("180.00"), "request_id": None}


def test_the_correlation_id_is_kept_as_the_request_id_that_placed_the_order():
    row = order_row(order(), "m1", "3f1c0c7e8a2b4d6f")
    assert row.request_id == "3f1c0c7e8a2b4d6f" and row.as_values()["request_id"] == "3f1c0c7e8a2b4d6f"


@pytest.mark.parametrize("correlation_id", [None, "", b"\xff", "line\nbreak", "nul\x00"])
def test_a_correlation_id_that_cannot_be_stored_is_left_out_and_the_order_kept(correlation_id):
    # It only traces the order: a producer that sets none, or garbage, does not lose the order.
    assert order_row(order(), "m1", correlation_id).request_id is None


def test_the_exercise_s_stringified_body_reads_the_same():
    assert order_row(b'{"user_id": "3", "number_of_items": "5", "total_amount": "180"}', "m") == OrderRow(
        "m", 3, 5, Decimal("180"))


@pytest.mark.parametrize("message_id", [b"\xff\xfe", "line\nbreak", "nul\x00", "bell\x07"])
def test_a_message_id_that_cannot_be_stored_is_an_invalid_order(message_id):
    with pytest.raises(InvalidOrder, match="message_id"):
        order_row(order(), message_id)


def test_a_body_the_contract_refuses_is_an_invalid_order_naming_the_field():
    with pytest.raises(InvalidOrder) as caught:
        order_row(b'{"user_id": 1, "total_amount": "2", "coupon": "X"}', "m")
    assert {detail["field"]: detail["reason"] for detail in caught.value.details} == {
        "number_of_items": "is required", "coupon": "unknown field"}
    assert "number_of_items: is required" in str(caught.value)
