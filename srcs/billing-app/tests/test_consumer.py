"""The consumer against the real broker and database: batching, idempotency, dead-lettering, counters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace

from crud_common.testing import wait_for

from .support import order, request_id_of


def test_orders_published_while_stopped_are_all_stored_once_it_starts(broker, orders, start_consumer):
    ids = broker.publish(order(user_id=i) for i in range(300))
    assert orders() == 0
    consumer = start_consumer()
    wait_for("300 orders stored", lambda: orders() == 300)
    wait_for("the batch acked", lambda: broker.queue_counts() == (0, 0), timeout_s=10)
    metrics = consumer.metrics
    assert metrics["billing_orders_stored_total"] == 300
    assert metrics["billing_duplicates_skipped_total"] == 0
    assert metrics["billing_dead_lettered_total"] == 0
    assert len(set(ids)) == 300


def test_a_lone_message_is_stored_promptly(broker, orders, start_consumer, stored_ids):
    # A lone order waits for company only for the linger (5 ms), and is acked at once.
    start_consumer()
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1)
    [message_id] = broker.publish([order(user_id=7)])
    wait_for("the order stored", lambda: stored_ids() == [message_id], timeout_s=10, every_s=0.02)
    wait_for("the order acked", lambda: broker.queue_counts() == (0, 0), timeout_s=15)


def test_each_order_is_stored_with_the_request_id_that_placed_it(broker, orders, engine, start_consumer):
    from sqlalchemy import select

    from app.models import Order

    ids = broker.publish([order(user_id=1), order(user_id=2)])
    start_consumer()
    wait_for("both orders stored", lambda: orders() == 2)
    with engine.connect() as connection:
        stored = dict(connection.execute(select(Order.message_id, Order.request_id)).all())
    assert stored == {message_id: request_id_of(message_id) for message_id in ids}


def test_orders_arriving_within_the_linger_share_one_batch(broker, orders, start_consumer):
    # Five orders 50 ms apart: without a linger each is a batch of its own (the next test); with one, those that
    # follow the first within it join its batch.
    consumer = start_consumer(batch_linger_ms=1000)
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1)
    broker.publish_spaced([order(user_id=user_id) for user_id in range(5)], gap_s=0.05)
    wait_for("5 orders stored and acked", lambda: orders() == 5 and broker.queue_counts() == (0, 0))
    wait_for("the batch counted (just after its ack)", lambda: consumer.metrics["billing_batches_total"] >= 1)
    assert consumer.metrics["billing_batches_total"] == 1


def test_without_a_linger_orders_arriving_apart_make_several_batches(broker, orders, start_consumer):
    consumer = start_consumer(batch_linger_ms=0)
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1)
    broker.publish_spaced([order(user_id=user_id) for user_id in range(5)], gap_s=0.05)
    wait_for("5 orders stored and acked", lambda: orders() == 5 and broker.queue_counts() == (0, 0))
    wait_for("more than one batch counted", lambda: consumer.metrics["billing_batches_total"] > 1)


def test_a_redelivered_message_id_is_stored_once(broker, orders, start_consumer, stored_ids):
    consumer = start_consumer()
    broker.publish([(order(user_id=1), "order-1")])
    wait_for("the first copy stored", lambda: orders() == 1)
    broker.publish([(order(user_id=1), "order-1"), (order(user_id=2), "order-2")])
    wait_for("both copies handled", lambda: consumer.metrics["billing_duplicates_skipped_total"] == 1)
    wait_for("order-2 stored", lambda: orders() == 2)
    assert sorted(stored_ids()) == ["order-1", "order-2"]
    assert consumer.metrics["billing_orders_stored_total"] == 2


def test_duplicates_within_one_batch_are_stored_once(broker, orders, start_consumer, stored_ids):
    broker.publish([(order(), "same")] * 5 + [(order(), "other")])
    consumer = start_consumer()
    wait_for("all six handled", lambda: consumer.metrics["billing_duplicates_skipped_total"] == 4)
    assert sorted(stored_ids()) == ["other", "same"]


def test_invalid_messages_are_dead_lettered_and_valid_ones_around_them_stored(
    broker, orders, start_consumer, stored_ids
):
    invalid = {
        "not-json": b"{not json",
        "not-object": b"[1, 2, 3]",
        "missing-field": json.dumps({"user_id": 1, "total_amount": "3"}).encode(),
        "bad-type": order(user_id="three"),
        "negative-items": order(number_of_items=-1),
        "negative-amount": order(total_amount="-0.01"),
        "bool": order(user_id=True),
        "unknown-field": order(coupon="FREE"),
        "three-decimals": order(total_amount="1.005"),
        "deeply-nested": b"[" * 10_000 + b"]" * 10_000,
        # The idempotency key itself must be storable text: no NUL or other control characters.
        "control\x01character": order(),
        "nul\x00character": order(),
    }
    messages = []
    for number, (message_id, body) in enumerate(invalid.items()):
        messages.append((order(user_id=number), f"valid-{number}"))
        messages.append((body, message_id))
    messages.append((order(user_id=99), "valid-last"))
    broker.publish(messages)

    consumer = start_consumer()
    dead_letter_queue = broker.dead_letter_queue
    wait_for("the invalid ones dead-lettered", lambda: broker.queue_counts(dead_letter_queue)[0] == len(invalid))
    wait_for("the valid ones stored", lambda: orders() == len(invalid) + 1)
    assert sorted(stored_ids()) == sorted([f"valid-{n}" for n in range(len(invalid))] + ["valid-last"])
    dead = broker.take_dead()
    assert sorted(p.message_id for p in dead) == sorted(invalid)
    assert all(p.headers["x-death"][0]["reason"] == "rejected" for p in dead)
    wait_for("nothing left unacked", lambda: broker.queue_counts() == (0, 0), timeout_s=10)
    assert consumer.metrics["billing_dead_lettered_total"] == len(invalid)
    assert consumer.metrics["billing_orders_stored_total"] == len(invalid) + 1


def test_a_message_without_message_id_is_stored_under_a_new_one(broker, orders, start_consumer, stored_ids):
    broker.publish([(order(), None)])
    start_consumer()
    wait_for("the order stored", lambda: orders() == 1)
    [stored] = stored_ids()
    assert len(stored) == 32


def test_status_endpoint_reports_health_and_counters(broker, orders, start_consumer):
    consumer = start_consumer()
    host, port = consumer.service.status.address
    base = f"http://{host}:{port}"
    wait_for("the consumer to subscribe", lambda: consumer.service.consumer.connected)

    status, health = _get(base + "/health")
    assert status == 200
    assert json.loads(health) == {"status": "ok", "consumer_connected": True, "database_reachable": True}

    broker.publish([order(user_id=i) for i in range(10)] + [(order(), "dup"), (order(), "dup"), b"[]", order(x=1)])
    wait_for("every message handled", lambda: consumer.metrics["billing_dead_lettered_total"] == 2
             and consumer.metrics["billing_orders_stored_total"] == 11
             and consumer.metrics["billing_duplicates_skipped_total"] == 1)
    status, text = _get(base + "/metrics")
    assert status == 200
    values = _samples(text)
    assert values["billing_orders_stored_total"] == 11
    assert values["billing_duplicates_skipped_total"] == 1
    assert values["billing_dead_lettered_total"] == 2
    assert values["billing_batches_total"] >= 1
    assert values["billing_consumer_connected"] == 1

    status, body = _get(base + "/nowhere")
    assert status == 404
    assert json.loads(body)["error"] == "not_found"


def test_health_is_503_while_the_consumer_is_not_connected(config):
    from app import create_service

    service = create_service(config)  # built, never run: no broker connection
    service.status.start()
    try:
        host, port = service.status.address
        status, body = _get(f"http://{host}:{port}/health")
        assert status == 503
        assert json.loads(body)["consumer_connected"] is False
    finally:
        service.status.close()
        service.engine.dispose()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_a_row_the_database_refuses_is_dead_lettered_and_the_batch_still_stored(
    broker, orders, start_consumer, stored_ids, monkeypatch
):
    # Validation makes such a row impossible; simulate a gap in it to exercise the savepoint fallback.
    import app.consumer
    from app.schemas import order_row

    def leaky_order_row(body: bytes, message_id: str, correlation_id: str | None):
        row = order_row(body, message_id, correlation_id)
        return replace(row, number_of_items=2**40) if message_id == "too-big" else row

    monkeypatch.setattr(app.consumer, "order_row", leaky_order_row)
    broker.publish([(order(), "before"), (order(), "too-big"), (order(), "after")])
    consumer = start_consumer()
    wait_for("the refused row dead-lettered", lambda: consumer.metrics["billing_dead_lettered_total"] == 1)
    assert sorted(stored_ids()) == ["after", "before"]
    assert [p.message_id for p in broker.take_dead()] == ["too-big"]
