"""Whatever is stopped, killed or restarted, every published order ends up stored exactly once."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from crud_common.testing import wait_for

from .support import order


def test_kill_9_mid_backlog_loses_and_duplicates_nothing(broker, orders, server, stored_ids):
    ids = broker.publish(order(user_id=i) for i in range(20_000))
    first = server()
    wait_for("part of the backlog stored", lambda: orders() >= 2_000, timeout_s=60)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    at_kill = orders()
    assert at_kill < 20_000, "the backlog was drained before the kill: nothing was tested"

    second = server()
    wait_for("the whole backlog stored", lambda: orders() >= 20_000, timeout_s=120)
    wait_for("every message acked", lambda: broker.queue_counts() == (0, 0), timeout_s=30)
    stored = stored_ids()
    assert len(stored) == 20_000
    assert sorted(stored) == sorted(ids)
    assert broker.queue_counts(broker.dead_letter_queue) == (0, 0)
    assert "Traceback" not in second.log()


def test_sigterm_exits_0_after_finishing_its_batch(broker, orders, server, stored_ids):
    ids = broker.publish(order(user_id=i) for i in range(5_000))
    process = server()
    wait_for("part of the backlog stored", lambda: orders() >= 500, timeout_s=60)
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(30) == 0, process.log()
    assert "received SIGTERM" in process.log()

    # Every stored order was acked, every other one is back in the queue: nothing in between.
    # (The broker's queue statistics lag a few seconds behind, hence the wait.)
    stored_at_stop = orders()
    wait_for("the rest back in the queue", lambda: broker.queue_counts() == (5_000 - stored_at_stop, 0), timeout_s=15)

    server()
    wait_for("the rest stored", lambda: orders() >= 5_000, timeout_s=60)
    assert sorted(stored_ids()) == sorted(ids)
    wait_for("every message acked", lambda: broker.queue_counts() == (0, 0), timeout_s=30)


def test_database_outage_holds_messages_until_it_is_back(broker, orders, start_consumer, stored_ids):
    consumer = start_consumer()
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1)
    with postgresql_stopped():
        # More than a batch: one full batch waits inside the delivery callback, the rest behind it.
        ids = broker.publish(order(user_id=i) for i in range(1_200))
        wait_for("the consumer retrying the commit", lambda: consumer.metrics["billing_database_retries_total"] >= 2)
        assert not consumer.service.store.reachable()
        wait_for("all 1,200 still held by the broker", lambda: sum(broker.queue_counts()) == 1_200, timeout_s=15)
        assert broker.queue_counts(broker.dead_letter_queue) == (0, 0)
        assert consumer.metrics["billing_orders_stored_total"] == 0
    wait_for("the held orders stored", lambda: orders() == 1_200, timeout_s=60)
    assert sorted(stored_ids()) == sorted(ids)
    wait_for("every message acked", lambda: broker.queue_counts() == (0, 0), timeout_s=30)
    assert broker.queue_counts(broker.dead_letter_queue) == (0, 0)
    assert consumer.metrics["billing_dead_lettered_total"] == 0


def test_a_long_database_outage_parks_the_batch_instead_of_spending_delivery_attempts(
    broker, orders, start_consumer, stored_ids
):
    # Held unacked for long, a batch would be returned by the broker's consumer timeout, each return counting
    # against the delivery limit; after a short hold (1 s here, 60 s by default) it is parked instead.
    consumer = start_consumer(db_hold_max_s=1)
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1)
    with postgresql_stopped():
        ids = broker.publish(order(user_id=i) for i in range(1_200))
        wait_for("the consumer to park and stop consuming", lambda: broker.consumer_count() == 0, timeout_s=30)
        assert consumer.metrics["billing_messages_parked_total"] >= 1
        # Handed back while the consumer stays connected: published again and acked, not returned unacked.
        wait_for("all 1,200 ready in the queue, none unacked", lambda: broker.queue_counts() == (1_200, 0),
                 timeout_s=30)
        assert consumer.service.consumer.connected
        assert consumer.metrics["billing_broker_connections_total"] == 1
        assert consumer.metrics["billing_orders_stored_total"] == 0
    wait_for("the parked orders stored", lambda: orders() == 1_200, timeout_s=60)
    assert sorted(stored_ids()) == sorted(ids)
    wait_for("every message acked", lambda: broker.queue_counts() == (0, 0), timeout_s=30)
    assert broker.queue_counts(broker.dead_letter_queue) == (0, 0)
    assert consumer.metrics["billing_duplicates_skipped_total"] == 0


def test_sigint_with_the_database_down_exits_0_and_parks_what_it_held(broker, orders, server, stored_ids):
    # The default 60 s hold: the consumer is still holding its batch when the signal comes.
    process = server()
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1, timeout_s=30)
    with postgresql_stopped():
        ids = broker.publish(order(user_id=i) for i in range(300))
        wait_for("the consumer holding the batch", lambda: "holding" in process.log(), timeout_s=30)
        process.process.send_signal(signal.SIGINT)
        assert process.process.wait(30) == 0, process.log()
        assert "received SIGINT" in process.log() and "parked" in process.log()
        wait_for("all 300 back in the queue, none unacked", lambda: broker.queue_counts() == (300, 0), timeout_s=30)
    server()
    wait_for("the parked orders stored", lambda: orders() == 300, timeout_s=60)
    assert sorted(stored_ids()) == sorted(ids)
    assert broker.queue_counts(broker.dead_letter_queue) == (0, 0)


def test_consumer_reconnects_by_itself_after_a_broker_restart(broker, orders, start_consumer, stored_ids):
    # One order per commit: most of the backlog is still in the queue when the broker stops.
    consumer = start_consumer(batch_size=1, prefetch=1)
    wait_for("the consumer to subscribe", lambda: broker.consumer_count() == 1)
    before = broker.publish(order(user_id=i) for i in range(10_000))
    with rabbitmq_stopped():
        at_stop = orders()
        wait_for("the consumer to notice", lambda: not consumer.service.consumer.connected, timeout_s=30)
    assert at_stop < 10_000, "the backlog was drained before the restart: nothing was tested"
    wait_for("the consumer to come back", lambda: broker.consumer_count() == 1, timeout_s=60)
    after = broker.publish(order(user_id=i) for i in range(100))
    wait_for("everything stored", lambda: orders() >= 10_100, timeout_s=180)
    assert sorted(stored_ids()) == sorted(before + after)
    assert consumer.metrics["billing_broker_connections_total"] >= 2
    wait_for("every message acked", lambda: broker.queue_counts() == (0, 0), timeout_s=30)


@contextmanager
def postgresql_stopped() -> Iterator[None]:
    [cluster] = sorted(glob.glob("/etc/postgresql/*/main"))[-1:]
    version = cluster.split("/")[3]
    subprocess.run(["pg_ctlcluster", version, "main", "stop", "-m", "fast"], check=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=True, timeout=60)
        wait_for("PostgreSQL to accept connections", lambda: subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0, timeout_s=60, every_s=0.2)


@contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120, capture_output=True)
