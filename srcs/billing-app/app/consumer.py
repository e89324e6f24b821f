"""The billing consumer: billing_queue -> batches -> orders_db, acked only after the commit.

Two parts, as pika's own asynchronous consumer example splits them: `BillingConsumer` is one connection's life
(connect, declare the queue, consume in batches, stop), and `ReconnectingConsumer` owns only the reconnect
policy: a fresh BillingConsumer after each broker failure, with capped, jittered backoff. A failure drops the
unacked deliveries, which the broker redelivers (the unique message_id makes that harmless).

A batch moves through a connection's loop as a value: gathered from what the broker delivered, then stored (or,
after a long database outage, parked), then settled (acked, or rejected to the dead-letter queue). Every wait
while connected goes through the connection (process_data_events with a time limit, connection.sleep), so
heartbeats are always answered.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pika
from crud_common.amqp import node_parameters
from crud_common.billing import InvalidOrder, declare_billing_queue
from crud_common.logs import one_line
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties
from sqlalchemy.exc import SQLAlchemyError

from .config import Config
from .metrics import Metrics
from .schemas import OrderRow, order_row
from .store import OrderStore, Stored

log = logging.getLogger("billing.consumer")

# How long the consumer waits for a delivery before it looks at its stop flag again.
_POLL_S = 0.1


def connection_parameters(config: Config, first_node: int | None = None) -> list[pika.ConnectionParameters]:
    """Every node of RABBITMQ_HOST, from `first_node` on (a random one when None): pika tries them in turn."""
    return node_parameters(
        config.rabbitmq,
        first=first_node,
        heartbeat=config.billing.heartbeat_s,
        # The reconnect policy retries with backoff; pika's own retries would hide the failure from it.
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=60,
        client_properties={"connection_name": "billing_app"},
    )


class Backoff:
    """Capped exponential delays with jitter, so restarted consumers do not retry in lockstep."""

    def __init__(self, first_s: float, ceiling_s: float) -> None:
        self._first, self._ceiling, self._attempt = first_s, ceiling_s, 0

    def next(self) -> float:
        delay = min(self._ceiling, self._first * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self._attempt = 0


@dataclass(frozen=True)
class Delivery:
    """A message as the broker delivered it, not yet acked."""

    tag: int
    properties: BasicProperties
    body: bytes


@dataclass(frozen=True)
class PendingOrder:
    """A delivery in a batch: its row, to store, and the delivery, to settle or park."""

    delivery: Delivery
    row: OrderRow


class BillingConsumer:
    """One connection to the broker, from its opening to its end. A broker failure ends it with an AMQPError; a
    stop request ends it cleanly, with nothing it took left unacked."""

    def __init__(self, config: Config, store: OrderStore, metrics: Metrics, stopping: Callable[[], bool],
                 first_node: int | None = None) -> None:
        self._settings = config.billing
        self._queue = config.rabbitmq.queue
        self._store = store
        self._metrics = metrics
        self._stopping = stopping
        # What the broker delivered and no batch has taken yet (at most `prefetch`).
        self._inbox: deque[Delivery] = deque()
        self._consumer_tag: str | None = None
        rabbit = config.rabbitmq
        nodes = connection_parameters(config, first_node)
        log.info("connecting to %s/%s", ", ".join(f"{node.host}:{node.port}" for node in nodes), rabbit.vhost)
        self._connection = pika.BlockingConnection(nodes)
        metrics.reconnects.inc()
        try:
            self._channel: BlockingChannel = self._connection.channel()
            # Parking publishes copies of held messages: each must be confirmed before its original is acked.
            self._channel.confirm_delivery()
            declare_billing_queue(self._channel, self._queue)
            self._channel.basic_qos(prefetch_count=self._settings.prefetch)
        except BaseException:
            self.close()
            raise
        metrics.connected.set(1)

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None

    @property
    def connected(self) -> bool:
        return self._connection.is_open

    def run(self) -> None:
        """Consume until a stop is requested, then cancel, and store and ack what was taken (or park it): a
        graceful stop leaves nothing unacked (quorum queues count every return against the delivery limit)."""
        self._subscribe()
        while not self._stopping():
            if not self.consuming:  # parked during a database outage
                self._wait_for_database()
                if not self._stopping():
                    self._subscribe()
                continue
            batch = self._gather()
            if batch:
                self._store_then_settle(batch)
        self._unsubscribe()
        while self._inbox:
            self._store_then_settle(self._take([]))

    def close(self) -> None:
        """Close the connection: whatever is unacked goes back to the queue."""
        self._consumer_tag = None
        self._metrics.connected.set(0)
        if self._connection.is_open:
            try:
                self._connection.close()
            except AMQPError as exc:
                log.debug("closing the broker connection: %s", one_line(exc))

    # --- a batch: gather, store or park, settle ------------------------------------------------------------

    def _gather(self) -> list[PendingOrder]:
        """The next batch: wait up to _POLL_S for a first delivery (the time limit only bounds how late a stop
        request is noticed), then take what has arrived, and wait for more until batch_linger_ms after the
        batch began, up to batch_size. What is already waiting is always taken, so under a backlog a batch fills
        up to batch_size whatever the linger."""
        if not self._inbox:
            self._connection.process_data_events(time_limit=_POLL_S)
        batch = self._take([])
        deadline = time.monotonic() + self._settings.batch_linger_ms / 1000
        while batch and len(batch) < self._settings.batch_size and not self._stopping():
            self._connection.process_data_events(time_limit=0)
            if not self._inbox:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Returns early when a delivery has been dispatched, else when the linger is over.
                self._connection.process_data_events(time_limit=left)
            self._take(batch)
        return batch

    def _take(self, batch: list[PendingOrder]) -> list[PendingOrder]:
        """Move deliveries from the inbox into `batch`, up to batch_size; one that can never be an order is
        dead-lettered on the way."""
        while self._inbox and len(batch) < self._settings.batch_size:
            delivery = self._inbox.popleft()
            try:
                row = order_row(delivery.body, _message_id(delivery), delivery.properties.correlation_id)
                batch.append(PendingOrder(delivery, row))
            except InvalidOrder as exc:
                log.warning("dead-lettering message_id=%s correlation_id=%s: %s", delivery.properties.message_id,
                            delivery.properties.correlation_id, exc)
                self._channel.basic_reject(delivery.tag, requeue=False)
                self._metrics.dead_lettered.inc()
        return batch

    def _store_then_settle(self, batch: list[PendingOrder]) -> None:
        stored = self._store_or_park(batch)
        if stored is not None:
            self._settle(batch, stored)

    def _store_or_park(self, batch: list[PendingOrder]) -> Stored | None:
        """Commit the batch. While the database is down, hold it and retry (never ack before the commit), for at
        most db_hold_max_s; then park it, and return None."""
        backoff = Backoff(0.2, self._settings.db_retry_max_s)
        held_since = time.monotonic()
        while True:
            try:
                return self._store.write([pending.row for pending in batch])
            except SQLAlchemyError as exc:
                # Not the messages' fault: nothing is acked or dead-lettered, the batch waits for the database,
                # for a while; then it goes back to the queue and consuming pauses until the database is back.
                self._metrics.db_retries.inc()
                if self._stopping() or time.monotonic() - held_since >= self._settings.db_hold_max_s:
                    log.warning("database unavailable (%s)", one_line(exc))
                    self._park(batch)
                    return None
                delay = backoff.next()
                log.warning("database unavailable (%s); holding %d messages, retrying in %.1fs", one_line(exc),
                            len(batch), delay)
                self._sleep(delay)

    def _settle(self, batch: list[PendingOrder], stored: Stored) -> None:
        """Reject what the database refused, then ack the batch (and nothing after it) in one frame."""
        for pending in batch:
            reason = stored.refused.get(pending.row.message_id)
            if reason is not None:
                log.error("dead-lettering message_id=%s correlation_id=%s: the database refused it: %s",
                          pending.row.message_id, pending.delivery.properties.correlation_id, reason)
                self._channel.basic_reject(pending.delivery.tag, requeue=False)
        self._channel.basic_ack(batch[-1].delivery.tag, multiple=True)
        refused = sum(pending.row.message_id in stored.refused for pending in batch)
        duplicates = len(batch) - len(stored.inserted) - refused
        self._metrics.stored.inc(len(stored.inserted))
        self._metrics.duplicates.inc(duplicates)
        self._metrics.dead_lettered.inc(refused)
        self._metrics.batches.inc()
        if duplicates:
            log.info("batch of %d: %d stored, %d duplicates skipped", len(batch), len(stored.inserted), duplicates)
        else:
            log.debug("batch of %d stored", len(batch))

    def _park(self, batch: list[PendingOrder]) -> None:
        """Hand the batch, and everything delivered after it, back to the queue without it counting as a failed
        delivery, and pause consuming.

        Returning unacked messages (closing, nack, the broker's consumer timeout) counts against the quorum
        queue's delivery limit, so a long database outage would end with valid orders dead-lettered. Instead,
        each held message is published again as a confirmed, persistent copy (same message_id, so storing both
        is impossible), and only then is the original acked.
        """
        self._unsubscribe()
        held = [pending.delivery for pending in batch] + list(self._inbox)
        self._inbox.clear()
        if not held:
            return
        for delivery in held:
            headers = {k: v for k, v in (delivery.properties.headers or {}).items() if k != "x-delivery-count"}
            delivery.properties.headers = headers or None
            # Returns once confirmed; a nack or a return raises, and the originals stay unacked.
            self._channel.basic_publish("", self._queue, delivery.body, delivery.properties, mandatory=True)
        self._channel.basic_ack(max(delivery.tag for delivery in held), multiple=True)
        self._metrics.parked.inc(len(held))
        log.warning("parked %d messages back in %s until the database answers", len(held), self._queue)

    # --- the subscription -----------------------------------------------------------------------------------

    def _on_delivery(self, _channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties,
                     body: bytes) -> None:
        self._inbox.append(Delivery(method.delivery_tag, properties, body))

    def _subscribe(self) -> None:
        self._consumer_tag = self._channel.basic_consume(self._queue, self._on_delivery)
        log.info("consuming %s (batches of up to %d)", self._queue, self._settings.batch_size)

    def _unsubscribe(self) -> None:
        """Cancel the subscription; deliveries already on their way join the inbox instead of being left unacked."""
        if self._consumer_tag is None:
            return
        pending = self._channel.basic_cancel(self._consumer_tag)
        self._consumer_tag = None
        for channel, method, properties, body in pending:
            self._on_delivery(channel, method, properties, body)

    def _wait_for_database(self) -> None:
        backoff = Backoff(0.5, self._settings.db_retry_max_s)
        while not self._stopping() and not self._store.reachable():
            self._sleep(backoff.next())
        if not self._stopping():
            log.info("the database answers again: resuming")

    def _sleep(self, seconds: float) -> None:
        # connection.sleep services heartbeats; short slices keep a stop request prompt.
        deadline = time.monotonic() + seconds
        while not self._stopping() and (left := deadline - time.monotonic()) > 0:
            self._connection.sleep(min(left, 0.25))


def _message_id(delivery: Delivery) -> object:
    """The delivery's idempotency key; a message without one gets a new id, kept in its properties so that a
    parked copy keeps it (else a later redelivery would be stored a second time)."""
    properties = delivery.properties
    if not properties.message_id:
        properties.message_id = uuid.uuid4().hex
        log.warning("message without message_id (correlation_id=%s): stored under new id %s; a redelivery of it "
                    "cannot be recognised, so its producer gets at-least-once, not exactly-once",
                    properties.correlation_id, properties.message_id)
    return properties.message_id


class ReconnectingConsumer:
    """The reconnect policy, and only that: a fresh BillingConsumer for each connection, and between two a capped
    exponential backoff with jitter, reset once a connection was made."""

    def __init__(self, config: Config, store: OrderStore, metrics: Metrics) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._stopping = False
        self._current: BillingConsumer | None = None
        # Each connection starts at the next node of RABBITMQ_HOST: after a node is lost, another one first.
        self._first_node = random.randrange(len(config.rabbitmq.nodes))

    @property
    def connected(self) -> bool:
        """Connected to the broker now, consuming or paused for the database (the status endpoint's answer)."""
        current = self._current
        return current is not None and current.connected

    def stop(self) -> None:
        """Ask for the in-flight batch to be stored (or returned) and run() to end. Safe in a signal handler."""
        self._stopping = True

    def run(self) -> None:
        backoff = Backoff(0.5, self._config.billing.reconnect_max_s)
        while not self._stopping:
            consumer: BillingConsumer | None = None
            try:
                consumer = self._current = BillingConsumer(self._config, self._store, self._metrics,
                                                           lambda: self._stopping, self._first_node)
                backoff.reset()
                consumer.run()
            except AMQPError as exc:
                log.warning("broker connection lost (%s); what was unacked is left to the broker's redelivery",
                            one_line(exc))
            finally:
                self._current = None
                self._first_node += 1
                if consumer is not None:
                    consumer.close()
            if not self._stopping:
                delay = backoff.next()
                log.info("reconnecting to RabbitMQ in %.1fs", delay)
                self._sleep(delay)
        log.info("consumer stopped")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.25))
