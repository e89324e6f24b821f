"""Confirmed, persistent publishing of orders to RabbitMQ, one AMQP connection per gateway thread.

pika's BlockingConnection is not thread-safe, so each gunicorn thread owns one (threading.local), opened on
that thread's first publish: after gunicorn's fork, never shared between processes. A connection found dead
(the broker restarted, an idle connection was dropped) is replaced and the publish is tried once more; a
duplicate is harmless because the message id is the idempotency key the consumer deduplicates on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pika
from crud_common.billing import declare_billing_queue
from crud_common.logs import one_line
from crud_common.settings import RabbitSettings
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ConnectionBlockedTimeout, NackError, UnroutableError

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not take the message: down, or could not route it, or (`refused`) it answered no."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


@dataclass(frozen=True)
class QueueState:
    messages: int
    consumers: int


class Publisher:
    def __init__(self, rabbit: RabbitSettings, *, timeout_s: float, heartbeat_s: int,
                 connection_name: str = "api_gateway") -> None:
        self._rabbit = rabbit
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._parameters = pika.ConnectionParameters(
            host=rabbit.host,
            port=rabbit.port,
            virtual_host=rabbit.vhost,
            credentials=pika.PlainCredentials(rabbit.user, rabbit.password.get_secret_value()),
            heartbeat=heartbeat_s,
            # Each of these bounds one way a publish could otherwise wait forever: TCP connect, the AMQP
            # handshake, a broker that blocks publishers (resource alarm), and bytes the peer never
            # acknowledges (a broker that vanished without closing the connection).
            socket_timeout=timeout_s,
            stack_timeout=timeout_s * 2,
            blocked_connection_timeout=timeout_s,
            tcp_options={"TCP_USER_TIMEOUT": int(timeout_s * 1000)},
            connection_attempts=1,
            client_properties={"connection_name": connection_name},
        )

    def publish(self, body: bytes, *, message_id: str, correlation_id: str) -> None:
        """Return only once the broker confirmed the message; raise BrokerUnavailable otherwise."""
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            message_id=message_id,
            correlation_id=correlation_id,
            timestamp=int(time.time()),
        )
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self._publish_once(body, properties)
                return
            except NackError:
                # The broker answered, and said no (e.g. the queue is full): trying again now would not help.
                raise BrokerUnavailable("the broker refused the message", refused=True) from None
            except ConnectionBlockedTimeout:
                self._discard()
                raise BrokerUnavailable("the broker is blocking publishers (resource alarm)") from None
            except UnroutableError:
                # The queue is gone (deleted by an operator): the new connection declares it again.
                self._discard()
                reason = f"the broker could not route the message to {self._rabbit.queue}"
            except (AMQPError, OSError) as exc:
                # Dead connection (idle drop, broker restart, forced close): start afresh, once.
                self._discard()
                reason = one_line(exc)
            if attempt == 1 and time.monotonic() - started <= self._timeout_s:
                log.info("publish failed on the existing connection (%s); reconnecting", reason)
                continue
            raise BrokerUnavailable(reason)

    def queue_state(self) -> QueueState:
        """Depth and consumers of the queue, through this thread's connection (for /health)."""
        for attempt in (1, 2):
            try:
                frame = self._channel().queue_declare(queue=self._rabbit.queue, passive=True)
                return QueueState(frame.method.message_count, frame.method.consumer_count)
            except (AMQPError, OSError) as exc:
                self._discard()
                if attempt == 2:
                    raise BrokerUnavailable(one_line(exc)) from None
        raise AssertionError("unreachable")

    def _publish_once(self, body: bytes, properties: pika.BasicProperties) -> None:
        channel = self._channel()
        # mandatory: a message no queue takes comes back (UnroutableError) instead of vanishing.
        channel.basic_publish(
            exchange="", routing_key=self._rabbit.queue, body=body, properties=properties, mandatory=True
        )

    def _channel(self) -> BlockingChannel:
        channel: BlockingChannel | None = getattr(self._local, "channel", None)
        if channel is not None and channel.is_open and channel.connection.is_open:
            # Reads what arrived while the thread was idle: a closed socket or a close from the broker
            # shows up here, before the message is sent, rather than in the middle of the publish.
            channel.connection.process_data_events(time_limit=0)
            if channel.is_open:
                return channel
        self._discard()
        connection = pika.BlockingConnection(self._parameters)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            declare_billing_queue(channel, self._rabbit.queue)
        except BaseException:
            _close_quietly(connection)
            raise
        self._local.connection = connection
        self._local.channel = channel
        log.info("AMQP connection opened to %s:%s/%s", self._rabbit.host, self._rabbit.port, self._rabbit.vhost)
        return channel

    def _discard(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        self._local.channel = None
        if connection is not None:
            _close_quietly(connection)


def _close_quietly(connection: pika.BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # noqa: BLE001 - already broken: nothing left to release but the socket, which pika drops
        log.debug("closing a broken AMQP connection failed", exc_info=True)
