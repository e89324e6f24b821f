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
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ConnectionBlockedTimeout, NackError, UnroutableError

from .config import RabbitConfig

log = logging.getLogger(__name__)

HEARTBEAT_S = 30


class BrokerUnavailable(Exception):
    """The broker did not take the message (down, refused it, or could not route it)."""


@dataclass(frozen=True)
class QueueState:
    messages: int
    consumers: int


def queue_arguments(queue: str) -> dict[str, Any]:
    """billing_queue's arguments, identical on every side that declares it (README "Queue topology")."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": f"{queue}.dlx",
        "x-dead-letter-routing-key": f"{queue}.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 5,
    }


def declare_topology(channel: BlockingChannel, queue: str) -> None:
    """Declared by the gateway too, so orders sent before the billing consumer ever ran are kept."""
    channel.exchange_declare(exchange=f"{queue}.dlx", exchange_type="direct", durable=True)
    channel.queue_declare(queue=f"{queue}.dead", durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue=f"{queue}.dead", exchange=f"{queue}.dlx", routing_key=f"{queue}.dead")
    channel.queue_declare(queue=queue, durable=True, arguments=queue_arguments(queue))


class Publisher:
    def __init__(self, config: RabbitConfig, *, connection_name: str = "api_gateway") -> None:
        self._config = config
        self._local = threading.local()
        timeout = config.timeout_s
        self._parameters = pika.ConnectionParameters(
            host=config.host,
            port=config.port,
            virtual_host=config.vhost,
            credentials=pika.PlainCredentials(config.user, config.password),
            heartbeat=config.heartbeat_s,
            # Each of these bounds one way a publish could otherwise wait forever: TCP connect, the AMQP
            # handshake, a broker that blocks publishers (resource alarm), and bytes the peer never
            # acknowledges (a host that vanished without closing the connection).
            socket_timeout=timeout,
            stack_timeout=timeout * 2,
            blocked_connection_timeout=timeout,
            tcp_options={"TCP_USER_TIMEOUT": int(timeout * 1000)},
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
        try:
            self._publish_once(body, properties)
            return
        except NackError:
            # The broker answered, and said no (e.g. the queue is full): trying again now would not help.
            raise BrokerUnavailable("the broker refused the message") from None
        except ConnectionBlockedTimeout:
            self._discard()
            raise BrokerUnavailable("the broker is blocking publishers (resource alarm)") from None
        except (AMQPError, OSError) as exc:
            # Dead connection (idle drop, broker restart, forced close) or lost topology: start afresh once.
            log.info("publish failed on the existing connection (%s); reconnecting", _describe(exc))
            self._discard()
            if time.monotonic() - started > self._config.timeout_s:
                raise BrokerUnavailable(_describe(exc)) from None
        try:
            self._publish_once(body, properties)
        except NackError:
            raise BrokerUnavailable("the broker refused the message") from None
        except UnroutableError:
            self._discard()
            raise BrokerUnavailable(f"the broker could not route the message to {self._config.queue}") from None
        except (AMQPError, OSError) as exc:
            self._discard()
            raise BrokerUnavailable(_describe(exc)) from None

    def queue_state(self) -> QueueState:
        """Depth and consumers of the queue, through this thread's connection (for /health)."""
        for attempt in (1, 2):
            try:
                frame = self._channel().queue_declare(queue=self._config.queue, passive=True)
                return QueueState(frame.method.message_count, frame.method.consumer_count)
            except (AMQPError, OSError) as exc:
                self._discard()
                if attempt == 2:
                    raise BrokerUnavailable(_describe(exc)) from None
        raise AssertionError("unreachable")

    def _publish_once(self, body: bytes, properties: pika.BasicProperties) -> None:
        channel = self._channel()
        # mandatory: a message no queue takes comes back (UnroutableError) instead of vanishing.
        channel.basic_publish(
            exchange="", routing_key=self._config.queue, body=body, properties=properties, mandatory=True
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
            declare_topology(channel, self._config.queue)
        except BaseException:
            _close_quietly(connection)
            raise
        self._local.connection = connection
        self._local.channel = channel
        log.info("AMQP connection opened to %s:%s/%s", self._config.host, self._config.port, self._config.vhost)
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
    except Exception:  # already broken: nothing left to release but the socket, which pika drops
        log.debug("closing a broken AMQP connection failed", exc_info=True)


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"
