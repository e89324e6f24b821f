"""The gateway and the consumer accept exactly the same orders: whatever the gateway answers 200 for is stored by
the consumer, once, with the values that were sent, and nothing of it is dead-lettered."""

from __future__ import annotations

import json
from decimal import Decimal

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from crud_common.testing import wait_for

from .conftest import env

# Each field as raw JSON text, so that every spelling a client could send is tried: numbers written any way
# JSON allows (-0, 1E+2, 180.500), strings of digits with or without leading zeros, around every bound, and
# things that are not numbers at all.
whole_numbers = st.one_of(
    st.integers(min_value=-2, max_value=2**64).map(str),
    st.sampled_from(["0", "-0", "999999999", "1000000000", "999999999999999999", "1000000000000000000", "5.0",
                     "1E+2", "true", "null"]),
    st.from_regex(r"0{0,3}[0-9]{1,20}", fullmatch=True).map(json.dumps),
    st.sampled_from(["", " 5", "+5", "5 ", "1_0", "٣"]).map(json.dumps),
)
amounts = st.one_of(
    st.decimals(min_value=-1, max_value=Decimal("10000000000.01"), places=2).map(str),
    st.decimals(min_value=0, max_value=1000, places=3).map(str),
    st.sampled_from(["-0.0", "-0", "0E-7", "1E+2", "1.8E2", "180.500", "180.501", "9999999999.99", "1e10", "true"]),
    st.from_regex(r"[0-9]{1,11}(\.[0-9]{0,4})?", fullmatch=True).map(json.dumps),
    st.sampled_from(["-1", "180.", ".5", "1e3", "0x10"]).map(json.dumps),
)


def test_every_order_the_gateway_accepts_is_stored_as_sent_and_none_is_dead_lettered(platform):
    dead_letters = f"{env('RABBITMQ_QUEUE')}.dead"
    dead_before = platform.queue_depth(dead_letters)
    accepted: dict[str, tuple[int, int, Decimal]] = {}

    @settings(max_examples=250, deadline=None, database=None)
    @given(user_id=whole_numbers, number_of_items=whole_numbers, total_amount=amounts)
    def post_order(user_id: str, number_of_items: str, total_amount: str) -> None:
        body = f'{{"user_id": {user_id}, "number_of_items": {number_of_items}, "total_amount": {total_amount}}}'
        response = requests.post(f"{platform.gateway}/api/billing", data=body,
                                 headers={"Content-Type": "application/json"}, timeout=15)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            sent = json.loads(body, parse_float=Decimal)
            accepted[response.json()["message_id"]] = (
                int(sent["user_id"]), int(sent["number_of_items"]), Decimal(sent["total_amount"]))

    post_order()
    assert len(accepted) > 20, "the strategies above should produce plenty of valid orders"
    ids = list(accepted)
    wait_for("every accepted order in orders_db", lambda: len(platform.stored_orders(ids)) == len(ids), timeout_s=60)
    assert platform.stored_orders(ids) == accepted
    assert platform.queue_depth(dead_letters) == dead_before
