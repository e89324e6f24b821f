"""The billing consumer: billing_queue -> batches -> orders_db, acked only after the commit.

One BlockingConnection, one thread, an explicit lifecycle (as in pika's own examples): connect, declare the
topology, consume in batches, and on any broker failure drop the unacked batch (the broker redelivers it; the
unique message_id makes that harmless) and reconnect with a capped exponential backoff. Every wait while
connected goes through the connection (process_data_events with a time limit, connection.sleep), so heartbeats
are always answered.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .config import Config
from .db import database_reachable
from .messages import InvalidMessage, OrderRow, parse_order
from .metrics import Metrics
from .orders import insert_orders

log = logging.getLogger("billing.consumer")

# How long the consumer waits for a delivery before it looks at its stop flag again.
_POLL_S = 0.1


def connection_parameters(config: Config) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=config.rabbitmq_host,
        port=config.rabbitmq_port,
        virtual_host=config.rabbitmq_vhost,
        credentials=pika.PlainCredentials(config.rabbitmq_user, config.rabbitmq_password),
        heartbeat=config.heartbeat_s,
        # The consumer's own loop retries with backoff; pika's retries would hide the failure from it.
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=60,
        client_properties={"connection_name": "billing_app"},
    )


def declare_topology(channel: BlockingChannel, config: Config) -> None:
    """The queues exactly as the gateway declares them (README "Queue topology"): any difference in the
    arguments makes the broker refuse the second declaration."""
    channel.exchange_declare(config.dead_letter_exchange, exchange_type="direct", durable=True)
    channel.queue_declare(config.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(config.dead_letter_queue, config.dead_letter_exchange, routing_key=config.dead_letter_queue)
    channel.queue_declare(
        config.queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": config.dead_letter_exchange,
            "x-dead-letter-routing-key": config.dead_letter_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": 5,
        },
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
class _Delivery:
    delivery_tag: int
    row: OrderRow
    properties: BasicProperties
    body: bytes

    @property
    def correlation_id(self) -> str | None:
        return self.properties.correlation_id


class BillingConsumer:
    def __init__(self, config: Config, engine: Engine, metrics: Metrics) -> None:
        self._config = config
        self._engine = engine
        self._sessions = sessionmaker(engine)
        self._metrics = metrics
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._batch: list[_Delivery] = []
        self._deliveries = 0
        self._flushing = False
        self._stopping = False
        self._consumer_tag: str | None = None
        # Set while the database is down and the batch was parked: nothing is consumed until it answers.
        self._paused = False
        self.connected = False

    def stop(self) -> None:
        """Ask the consumer to finish (or return) its batch and leave run(). Safe in a signal handler."""
        self._stopping = True

    def run(self) -> None:
        backoff = Backoff(0.5, self._config.reconnect_max_s)
        while not self._stopping:
            try:
                self._connect()
                backoff.reset()
                self._consume()
            except AMQPError as exc:
                log.warning(
                    "broker connection lost (%r); %d unacked messages are left to the broker's redelivery",
                    exc,
                    len(self._batch),
                )
            finally:
                self._batch.clear()
                self._disconnect()
            if not self._stopping:
                delay = backoff.next()
                log.info("reconnecting to RabbitMQ in %.1fs", delay)
                self._sleep_disconnected(delay)
        log.info("consumer stopped")

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        config = self._config
        log.info("connecting to amqp://%s:%d/%s", config.rabbitmq_host, config.rabbitmq_port, config.rabbitmq_vhost)
        self._connection = pika.BlockingConnection(connection_parameters(config))
        self._metrics.reconnects.inc()
        self._channel = self._connection.channel()
        # Parking publishes copies of held messages: each must be confirmed before its original is acked.
        self._channel.confirm_delivery()
        declare_topology(self._channel, config)
        self._channel.basic_qos(prefetch_count=config.prefetch)
        self._paused = False

    def _consume(self) -> None:
        assert self._connection is not None and self._channel is not None
        self._subscribe()
        self._set_connected(True)
        while not self._stopping:
            if self._paused:
                self._wait_for_database()
                if not self._stopping:
                    self._subscribe()
                continue
            # Wait for a delivery (the time limit only bounds how late a stop request is noticed), then gather
            # the rest of its batch.
            self._connection.process_data_events(time_limit=_POLL_S)
            self._gather_batch()
            self._flush()
        # Stopping. Cancel first so the broker sends nothing more, then store and ack what was taken: a
        # graceful stop leaves nothing unacked (quorum queues count every return against the delivery limit).
        # If the database is down, the batch is parked instead.
        self._unsubscribe()
        self._flush()

    def _gather_batch(self) -> None:
        """Once a batch has begun: take what has already arrived, and wait for more until batch_linger_ms after
        the batch began, up to batch_size. What is already waiting is always taken, so under a backlog a batch
        fills up to batch_size whatever the linger."""
        assert self._connection is not None
        deadline = time.monotonic() + self._config.batch_linger_ms / 1000
        while self._batch and len(self._batch) < self._config.batch_size and not self._stopping:
            seen = self._deliveries
            self._connection.process_data_events(time_limit=0)
            if self._deliveries == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # Returns early when a delivery has been dispatched, else when the linger is over.
                self._connection.process_data_events(time_limit=left)

    def _subscribe(self) -> None:
        assert self._channel is not None
        self._consumer_tag = self._channel.basic_consume(self._config.queue, self._on_delivery)
        self._paused = False
        log.info("consuming %s (batches of up to %d)", self._config.queue, self._config.batch_size)

    def _unsubscribe(self) -> None:
        """Cancel the subscription; deliveries that arrived meanwhile join the batch instead of being left unacked."""
        assert self._channel is not None
        if self._consumer_tag is None:
            return
        pending = self._channel.basic_cancel(self._consumer_tag)
        self._consumer_tag = None
        for channel, method, properties, body in pending:
            self._take(channel, method, properties, body)

    def _disconnect(self) -> None:
        self._set_connected(False)
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()  # unacked messages go back to the queue
            except AMQPError as exc:
                log.debug("closing the broker connection: %r", exc)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self._metrics.connected.set(1 if connected else 0)

    # --- messages --------------------------------------------------------------------------------------------

    def _on_delivery(
        self, channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
    ) -> None:
        self._deliveries += 1
        self._take(channel, method, properties, body)
        if len(self._batch) >= self._config.batch_size:
            # Allowed inside a callback: pika services I/O (heartbeats) but does not re-dispatch while we wait.
            self._flush()

    def _take(
        self, channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
    ) -> None:
        message_id = properties.message_id
        if not message_id:
            message_id = uuid.uuid4().hex
            log.warning(
                "message without message_id (correlation_id=%s): stored under new id %s; a redelivery of it "
                "cannot be recognised, so its producer gets at-least-once, not exactly-once",
                properties.correlation_id,
                message_id,
            )
            # Parked copies must keep the id, or a later redelivery would be stored a second time.
            properties.message_id = message_id
        try:
            row = parse_order(body, _valid_message_id(message_id))
        except InvalidMessage as exc:
            log.warning(
                "dead-lettering message_id=%s correlation_id=%s: %s", message_id, properties.correlation_id, exc
            )
            channel.basic_reject(method.delivery_tag, requeue=False)
            self._metrics.dead_lettered.inc()
            return
        self._batch.append(_Delivery(method.delivery_tag, row, properties, body))

    def _flush(self) -> None:
        """Commit the batch, then ack it. While the database is down, keep it and retry; never ack before."""
        # The waits between retries go through the connection, which keeps dispatching deliveries: they join
        # the batch being held and must not start a second, nested flush of it.
        if not self._batch or self._flushing:
            return
        self._flushing = True
        try:
            self._store_batch()
        finally:
            self._flushing = False

    def _store_batch(self) -> None:
        assert self._channel is not None
        backoff = Backoff(0.2, self._config.db_retry_max_s)
        held_since = time.monotonic()
        while True:
            try:
                stored, refused = self._write(self._batch)
                break
            except SQLAlchemyError as exc:
                # Not the messages' fault: nothing is acked or dead-lettered, the batch waits for the database,
                # for a while; then it goes back to the queue and consuming pauses until the database is back.
                self._metrics.db_retries.inc()
                if self._stopping or time.monotonic() - held_since >= self._config.db_hold_max_s:
                    log.warning("database unavailable (%s)", _short(exc))
                    self._park()
                    return
                delay = backoff.next()
                log.warning(
                    "database unavailable (%s); holding %d messages, retrying in %.1fs",
                    _short(exc),
                    len(self._batch),
                    delay,
                )
                self._sleep_connected(delay)
        for delivery, reason in refused:
            log.error(
                "dead-lettering message_id=%s correlation_id=%s: the database refused it: %s",
                delivery.row.message_id,
                delivery.correlation_id,
                reason,
            )
            self._channel.basic_reject(delivery.delivery_tag, requeue=False)
        self._channel.basic_ack(self._batch[-1].delivery_tag, multiple=True)
        duplicates = len(self._batch) - len(stored) - len(refused)
        self._metrics.stored.inc(len(stored))
        self._metrics.duplicates.inc(duplicates)
        self._metrics.dead_lettered.inc(len(refused))
        self._metrics.batches.inc()
        if duplicates:
            log.info("batch of %d: %d stored, %d duplicates skipped", len(self._batch), len(stored), duplicates)
        else:
            log.debug("batch of %d stored", len(self._batch))
        self._batch.clear()

    def _park(self) -> None:
        """Hand the batch back to the queue without it counting as a failed delivery, and pause consuming.

        Returning unacked messages (closing, nack, the broker's consumer timeout) counts against the quorum
        queue's delivery limit, so a long database outage would end with valid orders dead-lettered. Instead,
        each held message is published again as a confirmed, persistent copy (same message_id, so storing both
        is impossible), and only then is the original acked.
        """
        assert self._channel is not None
        self._unsubscribe()
        self._paused = True
        if not self._batch:
            return
        for delivery in self._batch:
            headers = {k: v for k, v in (delivery.properties.headers or {}).items() if k != "x-delivery-count"}
            delivery.properties.headers = headers or None
            self._channel.basic_publish(
                "", self._config.queue, delivery.body, delivery.properties, mandatory=True
            )  # returns once confirmed; a nack or return raises, and the originals stay unacked
        self._channel.basic_ack(self._batch[-1].delivery_tag, multiple=True)
        self._metrics.parked.inc(len(self._batch))
        log.warning("parked %d messages back in %s until the database answers", len(self._batch), self._config.queue)
        self._batch.clear()

    def _wait_for_database(self) -> None:
        backoff = Backoff(0.5, self._config.db_retry_max_s)
        while not self._stopping and not database_reachable(self._engine):
            self._sleep_connected(backoff.next())
        if not self._stopping:
            log.info("the database answers again: resuming")

    def _write(self, batch: list[_Delivery]) -> tuple[set[str], list[tuple[_Delivery, str]]]:
        """One INSERT and one commit; returns the message ids stored and the deliveries the database refused."""
        try:
            with self._sessions.begin() as session:
                return insert_orders(session, [delivery.row for delivery in batch]), []
        except (DataError, IntegrityError):
            # Validation should make this impossible; if it happens, find the culprits one savepoint at a time
            # instead of retrying the whole batch forever.
            log.exception("the database refused a batch of %d; storing its orders one by one", len(batch))
        stored: set[str] = set()
        refused: list[tuple[_Delivery, str]] = []
        with self._sessions.begin() as session:
            for delivery in batch:
                try:
                    with session.begin_nested():
                        stored |= insert_orders(session, [delivery.row])
                except (DataError, IntegrityError) as exc:
                    refused.append((delivery, _short(exc)))
        return stored, refused

    # --- waits -----------------------------------------------------------------------------------------------

    def _sleep_connected(self, seconds: float) -> None:
        # connection.sleep services heartbeats; short slices keep a stop request prompt.
        assert self._connection is not None
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            self._connection.sleep(min(left, 0.25))

    def _sleep_disconnected(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.25))


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def _valid_message_id(message_id: object) -> str:
    """The idempotency key as it will be stored: text PostgreSQL accepts (pika hands over bytes when the
    producer's id was not UTF-8; AMQP already bounds it to 255 bytes)."""
    if not isinstance(message_id, str):
        raise InvalidMessage("message_id is not UTF-8 text")
    if _CONTROL_CHARACTER.search(message_id):
        raise InvalidMessage("message_id holds a control character")
    return message_id
