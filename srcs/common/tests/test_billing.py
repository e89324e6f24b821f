"""The billing contract: one definition of an order for the gateway and the consumer, and one declaration of the
queue. Whatever the gateway accepts, the consumer decodes to the same order."""

from __future__ import annotations

import json
from decimal import Decimal

import pika
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crud_common.billing import (
    MAX_AMOUNT, MAX_NUMBER_OF_ITEMS, MAX_USER_ID, InvalidOrder, OrderFields, declare_billing_queue,
    declare_billing_queue_async, decode_order, encode_order, queue_arguments,
)
from crud_common.bodies import exact_decimal, json_object

from .conftest import rabbit_parameters

ACCEPTED = [
    ('{"user_id": "3", "number_of_items": "5", "total_amount": "180"}', (3, 5, "180.00")),
    ('{"user_id": 3, "number_of_items": 5, "total_amount": 180.5}', (3, 5, "180.50")),
    ('{"user_id": "007", "number_of_items": 0, "total_amount": "180.500"}', (7, 0, "180.50")),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": -0.0}', (1, 1, "0.00")),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": 1E+2}', (1, 1, "100.00")),
    ('{"user_id": 999999999999999999, "number_of_items": 999999999, "total_amount": 9999999999.99}',
     (MAX_USER_ID, MAX_NUMBER_OF_ITEMS, "9999999999.99")),
    ('{"user_id": "999999999999999999", "number_of_items": "999999999", "total_amount": "9999999999.99"}',
     (MAX_USER_ID, MAX_NUMBER_OF_ITEMS, "9999999999.99")),
]
REFUSED = [
    ('{"user_id": 1000000000000000000, "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": "1000000000000000000", "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": true, "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": 5.0, "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": " 5", "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": "+5", "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": "\\u0663", "number_of_items": 1, "total_amount": 1}', "user_id"),
    ('{"user_id": 1, "number_of_items": 1000000000, "total_amount": 1}', "number_of_items"),
    ('{"user_id": 1, "number_of_items": -1, "total_amount": 1}', "number_of_items"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": "-0"}', "total_amount"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": "1e3"}', "total_amount"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": 180.501}', "total_amount"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": "10000000000"}', "total_amount"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": -0.5}', "total_amount"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": "180."}', "total_amount"),
    ('{"user_id": 1, "number_of_items": 1, "total_amount": 1, "coupon": "FREE"}', "coupon"),
    ('{"number_of_items": 1, "total_amount": 1}', "user_id"),
]


@pytest.mark.parametrize(("body", "values"), ACCEPTED)
def test_an_accepted_order_is_one_canonical_message_the_consumer_reads_back(body, values):
    order = OrderFields.model_validate(json_object(body.encode(), parse_float=exact_decimal))
    user_id, items, amount = values
    assert encode_order(order) == json.dumps(
        {"user_id": user_id, "number_of_items": items, "total_amount": amount}, separators=(",", ":")).encode()
    assert decode_order(encode_order(order)) == order
    assert decode_order(body.encode()) == order  # the stringified body of the exercise reads the same


@pytest.mark.parametrize(("body", "field"), REFUSED)
def test_a_refused_order_names_its_field_on_both_sides(body, field):
    with pytest.raises(ValidationError):
        OrderFields.model_validate(json_object(body.encode(), parse_float=exact_decimal))
    with pytest.raises(InvalidOrder) as caught:
        decode_order(body.encode())
    assert field in [detail["field"] for detail in caught.value.details]


def order(**fields: object) -> bytes:
    return json.dumps({"user_id": 1, "number_of_items": 2, "total_amount": "10.50", **fields}).encode()


@pytest.mark.parametrize(
    "amount",
    ["12.345", 12.345, "-1", -1, -0.01, "1e3", " 1", "1 ", "1,5", "", ".5", "5.", "+5", "99999999999.99", True, False,
     None, [], {}],
)
def test_invalid_amounts(amount):
    with pytest.raises(InvalidOrder) as caught:
        decode_order(order(total_amount=amount))
    assert [detail["field"] for detail in caught.value.details] == ["total_amount"]


@pytest.mark.parametrize("field", ["user_id", "number_of_items"])
@pytest.mark.parametrize(
    "value", [-1, "-1", " 1", "1 ", "+1", "1.0", 1.0, 1.5, "1e2", "1_000", "", "abc", True, False, None, [1], {},
              "9" * 5000]
)
def test_invalid_whole_numbers(field, value):
    with pytest.raises(InvalidOrder) as caught:
        decode_order(order(**{field: value}))
    assert [detail["field"] for detail in caught.value.details] == [field]


def test_json_numbers_are_exact_decimals():
    assert decode_order(order(total_amount=0.1)).total_amount == Decimal("0.1")


@pytest.mark.parametrize("body", [b"{", b"[1]", b"\xff", b'{"user_id": NaN}'])
def test_a_body_that_is_not_an_object_is_an_invalid_order(body):
    with pytest.raises(InvalidOrder):
        decode_order(body)


# What a client may send, field by field, as raw JSON: both spellings, around every bound, and garbage.
tokens = st.one_of(
    st.integers(min_value=-2, max_value=2 * MAX_USER_ID).map(str),
    st.decimals(min_value=-1, max_value=MAX_AMOUNT + 1, places=3, allow_nan=False).map(str),
    st.from_regex(r"0{0,2}[0-9]{1,20}(\.[0-9]{0,4})?", fullmatch=True).map(json.dumps),
    st.sampled_from(["-0.0", "1E+2", "true", "null", '"٣"', '" 5"', "[]"]),
)


@settings(max_examples=500, deadline=None)
@given(user_id=tokens, number_of_items=tokens, total_amount=tokens)
def test_whatever_the_gateway_accepts_the_consumer_decodes_to_the_same_order(user_id, number_of_items, total_amount):
    body = f'{{"user_id": {user_id}, "number_of_items": {number_of_items}, "total_amount": {total_amount}}}'
    document = json_object(body.encode(), parse_float=exact_decimal)
    try:
        order = OrderFields.model_validate(document)
    except ValidationError:
        return
    decoded = decode_order(encode_order(order))
    assert decoded == order
    assert (decoded.user_id, decoded.number_of_items) == (int(document["user_id"]), int(document["number_of_items"]))
    assert decoded.total_amount == Decimal(document["total_amount"])


def test_both_sides_declare_the_queue_the_same_and_the_broker_refuses_any_other(rabbit, channel):
    queue = "crud_common_test_queue"
    try:
        declare_billing_queue(channel, queue)
        declare_billing_queue(channel, queue)  # the second side's declaration: accepted, as it is the same
        other = pika.BlockingConnection(rabbit_parameters(rabbit)).channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            other.queue_declare(queue, durable=True, arguments={**queue_arguments(queue), "x-delivery-limit": 6})
        assert refused.value.reply_code == 406  # PRECONDITION_FAILED: why there is one definition
        other.connection.close()
    finally:
        for name in (queue, f"{queue}.dead"):
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}.dlx")


def test_the_asynchronous_declaration_is_the_same_declaration(rabbit, channel):
    # The gateway's publisher declares on pika's asynchronous channel, the consumer on a blocking one: a
    # declaration that differed would be refused by the broker (406), as above.
    queue = "crud_common_test_async_queue"
    declared: list[str] = []

    def on_open(connection):
        connection.channel(on_open_callback=lambda async_channel: declare_billing_queue_async(
            async_channel, queue, lambda: (declared.append(queue), connection.close())))

    connection = pika.SelectConnection(rabbit_parameters(rabbit), on_open_callback=on_open,
                                       on_close_callback=lambda *_: connection.ioloop.stop())
    timer = connection.ioloop.call_later(30, connection.ioloop.stop)
    connection.ioloop.start()
    connection.ioloop.remove_timeout(timer)
    try:
        assert declared == [queue]
        declare_billing_queue(channel, queue)  # accepted: the same arguments, the same dead-letter topology
        assert channel.queue_declare(f"{queue}.dead", passive=True).method.message_count == 0
    finally:
        for name in (queue, f"{queue}.dead"):
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}.dlx")
