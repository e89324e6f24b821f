"""Confirmed, persistent publishing of orders to RabbitMQ: one AMQP connection per gateway process, owned by a
thread of its own, as in pika's asynchronous publisher example.

pika's connections are not thread-safe. This one (a SelectConnection) lives in an I/O thread, started in each
gunicorn worker after the fork on its first use; request threads hand it work through the one thread-safe call
pika has (`add_callback_threadsafe`) and wait for the outcome on a future, for at most `timeout_s`. So every
wait has an end: a broker that takes a message and never confirms it (a quorum queue that lost its majority, a
stalled node) is a 503 within that bound, never a request that hangs; and the I/O thread answers heartbeats
while the gateway is idle, so an idle connection is not dropped.

The connection goes to the first node of RABBITMQ_HOST that answers, each process starting at a node of its
own. When it dies (the node stopped or was killed, the connection was closed), every message still waiting
for its confirm fails; its request tries once more, on a new connection to the next live node, while its time
lasts. When the broker refuses or returns a message, the channel is replaced instead (a new one on the same
connection declares the queue again), and the message is sent once more on it. A duplicate is harmless: the
message id is the idempotency key the consumer deduplicates on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
from crud_common.amqp import node_after, node_parameters
from crud_common.billing import declare_billing_queue_async
from crud_common.logs import one_line
from crud_common.settings import RabbitSettings
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel
from pika.spec import Basic

log = logging.getLogger(__name__)

Result = TypeVar("Result")


class BrokerUnavailable(Exception):
    """The broker did not take the message: down, or could not route it, or (`refused`) it answered no."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


class _ConnectionLost(Exception):
    """The connection or channel an operation was on (or was waiting for) is gone: worth one more try on a new
    one."""


class _Unroutable(_ConnectionLost):
    """The broker returned the message: no queue took it (deleted by an operator). A new channel declares the
    queue again, so this is worth one more try too."""


class _Refused(Exception):
    """The broker nacked the message: the queue is full (reject-publish), or the channel is stuck refusing. The
    second is RabbitMQ 3.10's channel to a quorum queue whose leader was killed: it may nack every publish until
    that node is back, while a new channel's are confirmed (the chaos tests' leader kill: 23-63% of the orders sent
    while the node was down refused). So the link opens a new channel, and the message is sent once more on it,
    which nacks it again only if the queue is really full."""


@dataclass(frozen=True)
class QueueState:
    messages: int
    consumers: int


@dataclass
class _Unconfirmed:
    future: Future[None]
    message_id: str
    returned: bool = False


class BrokerLink:
    """The process's AMQP connection, its channel in confirm mode, and the I/O thread that owns both. Every
    method but `call` and `close` runs in the I/O thread."""

    def __init__(self, rabbit: RabbitSettings, *, timeout_s: float, heartbeat_s: int, connection_name: str) -> None:
        self._rabbit = rabbit
        self._options = {
            "heartbeat": heartbeat_s,
            # Each bounds one way opening a connection could take longer than a request may wait: the TCP
            # connect, the AMQP handshake, bytes the peer never acknowledges (a node that vanished).
            "socket_timeout": timeout_s,
            "stack_timeout": timeout_s,
            "tcp_options": {"TCP_USER_TIMEOUT": int(timeout_s * 1000)},
            # A broker that blocks publishers (a resource alarm) is left after this.
            "blocked_connection_timeout": timeout_s,
            "connection_attempts": 1,
            "client_properties": {"connection_name": connection_name},
        }
        self._first_node: int | None = None  # a random one for this process's first connection
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None  # the channel ready for operations, if any
        self._retired: Channel | None = None  # the channel being closed on purpose, for a new one
        self._renewing = False  # from then until the new channel is ready
        self._opening = False  # a connection or a channel is being made ready
        self._openings = 0
        self._closing = False
        # Operations waiting for the channel to be ready; those sent and not answered yet; and, of these, the
        # messages not yet confirmed, by delivery tag.
        self._waiting: deque[tuple[Callable[[Channel, Future[Any]], None], Future[Any]]] = deque()
        self._running: list[Future[Any]] = []
        self._unconfirmed: dict[int, _Unconfirmed] = {}
        self._last_tag = 0
        self._timeout_s = timeout_s
        self._ioloop = IOLoop()
        self._thread = threading.Thread(target=self._run, name=f"{connection_name}-amqp", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- from any thread ---------------------------------------------------------------------------------------

    def call(self, operation: Callable[[Channel, Future[Result]], None], timeout_s: float) -> Result:
        """Run `operation(channel, future)` in the I/O thread once the channel is ready, and return what it
        puts in the future; raise what it puts there, or FutureTimeout after `timeout_s`."""
        if not self.alive:
            raise _ConnectionLost("the AMQP I/O thread has stopped")
        future: Future[Result] = Future()
        self._ioloop.add_callback_threadsafe(lambda: self._submit(operation, future))
        try:
            return future.result(timeout=max(timeout_s, 0.0))
        except FutureTimeout:
            if not future.cancel() and future.done():  # answered in the very last moment
                return future.result(timeout=0)
            raise

    def close(self) -> None:
        """Close the connection and stop the I/O thread (a worker's end, a test's)."""
        if self.alive:
            self._ioloop.add_callback_threadsafe(self._shut_down)
            self._thread.join(timeout=5)

    # --- in the I/O thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._ioloop.start()
        except BaseException:  # noqa: BLE001 - logged; every request waiting is told at once, and the Publisher
            # replaces this link on its next use instead of waiting on a thread that is gone.
            log.exception("the AMQP I/O thread stopped")
            self._fail_all(_ConnectionLost("the AMQP I/O thread stopped"))
        finally:
            self._ioloop.close()

    def _submit(self, operation: Callable[[Channel, Future[Any]], None], future: Future[Any]) -> None:
        self._waiting.append((operation, future))
        if self._channel is not None:
            self._run_waiting()
        elif not self._opening:
            self._open()

    def _run_waiting(self) -> None:
        while self._waiting and self._channel is not None and self._channel.is_open:
            operation, future = self._waiting.popleft()
            if not future.set_running_or_notify_cancel():  # its request gave up waiting
                continue
            self._running = [running for running in self._running if not running.done()]
            self._running.append(future)
            try:
                operation(self._channel, future)
            except Exception as exc:  # noqa: BLE001 - the thread must live on: the request gets the failure
                log.warning("AMQP operation failed: %s", one_line(exc))
                future.set_exception(_ConnectionLost(one_line(exc)))

    def _open(self) -> None:
        nodes = node_parameters(self._rabbit, first=self._first_node, **self._options)
        try:
            workflow = pika.SelectConnection.create_connection(nodes, self._on_connected, custom_ioloop=self._ioloop)
        except Exception as exc:  # noqa: BLE001 - reported to what waited for it
            self._fail_waiting(_ConnectionLost(one_line(exc)))
            return
        self._begin_opening(workflow)

    def _begin_opening(self, workflow: Any = None) -> None:
        self._opening = True
        self._openings += 1
        opening = self._openings
        # Everything until the queue is declared within the bound: a node that accepts the connection and then
        # stalls (before or after the handshake, or opening a channel) is given up, and the next attempt goes to
        # the next node.
        self._ioloop.call_later(self._timeout_s, lambda: self._opening_overdue(workflow, opening))

    def _opening_overdue(self, workflow: Any, opening: int) -> None:
        if not self._opening or opening != self._openings:  # ready in time, or another opening since
            return
        if self._connection is None:
            if workflow is not None:
                workflow.abort()  # reported to _on_connected as an AMQPConnectorAborted
        elif self._connection.is_open:
            log.warning("AMQP connection to %s (or its new channel) not ready within %g s; giving it up",
                        self._connection.params.host, self._timeout_s)
            self._connection.close()

    def _on_connected(self, connection: Any) -> None:
        if not isinstance(connection, pika.SelectConnection):  # every node failed: an AMQPConnectorException
            self._opening = False
            self._fail_waiting(_ConnectionLost(one_line(connection)))
            return
        self._connection = connection
        params = connection.params
        self._first_node = node_after(self._rabbit, params.host, params.port)
        log.info("AMQP connection opened to %s:%s/%s", params.host, params.port, params.virtual_host)
        connection.add_on_close_callback(self._on_connection_closed)
        self._open_channel(connection)

    def _open_channel(self, connection: pika.SelectConnection) -> None:
        channel = connection.channel(on_open_callback=self._on_channel_open)
        channel.add_on_close_callback(self._on_channel_closed)

    def _on_channel_open(self, channel: Channel) -> None:
        # mandatory publishes: a message no queue takes comes back (basic.return) instead of vanishing.
        channel.add_on_return_callback(self._on_returned)
        self._last_tag = 0
        channel.confirm_delivery(
            # What a retired channel still answers is not this channel's: its delivery tags count anew.
            ack_nack_callback=lambda frame: self._on_confirm(frame) if channel is self._channel else None,
            callback=lambda _frame: declare_billing_queue_async(channel, self._rabbit.queue,
                                                                lambda: self._on_ready(channel)),
        )

    def _on_ready(self, channel: Channel) -> None:
        self._channel = channel
        self._opening = self._renewing = False
        self._run_waiting()

    def publish(self, channel: Channel, future: Future[None], body: bytes, properties: pika.BasicProperties) -> None:
        channel.basic_publish("", self._rabbit.queue, body, properties, mandatory=True)
        self._last_tag += 1
        self._unconfirmed[self._last_tag] = _Unconfirmed(future, properties.message_id)

    def _on_returned(self, channel: Channel, _method: Basic.Return, properties: pika.BasicProperties,
                     _body: bytes) -> None:
        if channel is not self._channel:
            return
        # The broker returns a message before it confirms it: mark the oldest one sent with this id.
        for unconfirmed in self._unconfirmed.values():
            if unconfirmed.message_id == properties.message_id and not unconfirmed.returned:
                unconfirmed.returned = True
                break

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tags = [tag for tag in self._unconfirmed if tag <= method.delivery_tag] if method.multiple \
            else [method.delivery_tag]
        returned = False
        for tag in tags:
            unconfirmed = self._unconfirmed.pop(tag, None)
            if unconfirmed is None:
                continue
            if isinstance(method, Basic.Nack):
                unconfirmed.future.set_exception(_Refused("the broker refused the message"))
            elif unconfirmed.returned:
                returned = True
                unconfirmed.future.set_exception(
                    _Unroutable(f"the broker could not route the message to {self._rabbit.queue}"))
            else:
                unconfirmed.future.set_result(None)
        if returned:
            self._renew_channel("billing queue gone: declaring it again")
        elif isinstance(method, Basic.Nack):
            self._renew_channel("a message refused")

    def _renew_channel(self, reason: str) -> None:
        """Close the channel for a new one on the same connection (the queue declared again), which what is
        submitted from now on waits for. The messages sent on the old one and not confirmed yet fail, and are sent
        once more by their request; the old channel still answers what else it was asked (its close waits for
        that)."""
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        log.info("AMQP channel replaced: %s", reason)
        self._channel, self._retired, self._renewing = None, channel, True
        lost = _ConnectionLost(reason)
        for unconfirmed in self._unconfirmed.values():
            if not unconfirmed.future.done():
                unconfirmed.future.set_exception(lost)
        self._unconfirmed.clear()
        self._begin_opening()
        channel.close(reply_text=reason)

    def _on_channel_closed(self, channel: Channel, reason: Exception) -> None:
        if channel is self._retired:
            self._retired = None
            if self._connection is not None and self._connection.is_open:
                self._open_channel(self._connection)
            return
        # A channel the broker closed (a declaration it refused, a queue gone under a passive declare): start
        # afresh with a new connection, which declares the queue again. A channel closed with its connection
        # is left to the connection's own callback.
        if self._connection is not None and self._connection.is_open:
            log.warning("AMQP channel closed (%s); reopening the connection", one_line(reason))
            self._connection.close()

    def _on_connection_closed(self, connection: pika.SelectConnection, reason: Exception) -> None:
        if connection is not self._connection:
            return
        log.info("AMQP connection closed: %s", one_line(reason))
        # Ready, or replacing its channel: what waits was never sent, and waits for the next connection.
        was_ready = self._channel is not None or self._renewing
        self._connection = None
        self._channel = self._retired = None
        self._opening = self._renewing = False
        lost = _ConnectionLost(one_line(reason))
        self._fail_running(lost)
        if not was_ready:
            # It never got as far as a channel with the queue declared: what waited for it fails.
            self._fail_waiting(lost)
        elif self._waiting and not self._closing:
            # What was never sent waits for the next connection.
            self._open()

    def _fail_waiting(self, error: Exception) -> None:
        while self._waiting:
            _operation, future = self._waiting.popleft()
            if future.set_running_or_notify_cancel():
                future.set_exception(error)

    def _fail_running(self, error: Exception) -> None:
        for future in self._running:
            if not future.done():
                future.set_exception(error)
        self._running.clear()
        self._unconfirmed.clear()

    def _fail_all(self, error: Exception) -> None:
        self._fail_running(error)
        self._fail_waiting(error)

    def _shut_down(self) -> None:
        self._fail_all(_ConnectionLost("the publisher is closing"))
        self._closing = True  # no reconnect from here on
        if self._connection is not None and self._connection.is_open:
            self._connection.add_on_close_callback(lambda *_: self._ioloop.stop())
            self._connection.close()
        else:
            self._ioloop.stop()


class Publisher:
    """Orders to billing_queue, confirmed; the I/O thread and its connection are made on first use, in the
    process that uses them (a gunicorn worker, after the fork)."""

    def __init__(self, rabbit: RabbitSettings, *, timeout_s: float, heartbeat_s: int,
                 connection_name: str = "api_gateway") -> None:
        self._rabbit = rabbit
        self._timeout_s = timeout_s
        self._heartbeat_s = heartbeat_s
        self._connection_name = connection_name
        self._link: BrokerLink | None = None
        self._link_lock = threading.Lock()

    def publish(self, body: bytes, *, message_id: str, correlation_id: str) -> None:
        """Return only once the broker confirmed the message; raise BrokerUnavailable otherwise, within
        `timeout_s`."""
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            message_id=message_id,
            correlation_id=correlation_id,
            timestamp=int(time.time()),
        )
        self._call_twice(lambda link, channel, future: link.publish(channel, future, body, properties), "confirm")

    def queue_state(self) -> QueueState:
        """Depth and consumers of the queue (for /health), within `timeout_s`."""
        queue = self._rabbit.queue

        def passive_declare(_link: BrokerLink, channel: Channel, future: Future[QueueState]) -> None:
            channel.queue_declare(queue, passive=True, callback=lambda frame: future.done() or future.set_result(
                QueueState(frame.method.message_count, frame.method.consumer_count)))

        return self._call_twice(passive_declare, "answer")

    def _call_twice(self, operation: Callable[[BrokerLink, Channel, Future[Result]], None], awaited: str) -> Result:
        """`operation` on the process's link, within `timeout_s`; once more, on a new channel or connection, if
        the first one was lost or refused. BrokerUnavailable when neither was answered in time."""
        link = self._broker_link()
        deadline = time.monotonic() + self._timeout_s
        for attempt in (1, 2):
            try:
                return link.call(lambda channel, future: operation(link, channel, future), deadline - time.monotonic())
            except FutureTimeout:
                raise BrokerUnavailable(f"no {awaited} from the broker within {self._timeout_s:g} s") from None
            except (_Refused, _ConnectionLost) as exc:
                if attempt == 2 or time.monotonic() >= deadline:
                    raise BrokerUnavailable(str(exc), refused=isinstance(exc, _Refused)) from None
                log.info("AMQP operation failed (%s); trying once more", exc)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._link_lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()

    def _broker_link(self) -> BrokerLink:
        with self._link_lock:
            if self._link is None or not self._link.alive:
                self._link = BrokerLink(self._rabbit, timeout_s=self._timeout_s, heartbeat_s=self._heartbeat_s,
                                        connection_name=self._connection_name)
            return self._link
