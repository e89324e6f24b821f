"""Helpers of the billing suite: its settings on the test database and vhost, the broker as the tests see it,
the service in-process or as PM2 runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pika
from crud_common import testing
from crud_common.billing import dead_letter_queue, declare_billing_queue
from crud_common.settings import load
from crud_common.testing import publish_confirmed

from app import BillingService, create_service
from app.config import Config
from app.consumer import connection_parameters

SERVICE_DIR = Path(__file__).resolve().parents[1]


def environ_for_tests(**overrides: str) -> dict[str, str]:
    """The platform's settings with billing on the test database and vhost, plus `overrides`.

    The queue gets a suite-specific name (its .dlx/.dead names derive from it as in production), so that
    this suite never races the gateway's or the system tests' use of billing_queue on the same vhost.
    """
    environ = testing.environ_for_tests()
    return {
        **environ,
        "BILLING_DB_NAME": environ["BILLING_TEST_DB_NAME"],
        "RABBITMQ_VHOST": environ["RABBITMQ_TEST_VHOST"],
        "RABBITMQ_QUEUE": environ["RABBITMQ_QUEUE"] + "_billing_suite",
        "BILLING_STATUS_PORT": "0",
        # Short backoff ceilings so that recoveries happen within a test's deadline.
        "BILLING_RECONNECT_MAX_S": "2",
        "BILLING_DB_RETRY_MAX_S": "1",
        **overrides,
    }


def config_for_tests(**overrides: str) -> Config:
    return load(Config, environ_for_tests(**overrides))


def order(user_id: Any = 1, number_of_items: Any = 2, total_amount: Any = "10.50", **extra: Any) -> bytes:
    fields = {"user_id": user_id, "number_of_items": number_of_items, "total_amount": total_amount, **extra}
    return json.dumps(fields).encode()


def request_id_of(message_id: str | None) -> str:
    """The correlation id `Broker.publish` gives a message: a request id the test can tell from its message id."""
    return f"request-{message_id}" if message_id else uuid.uuid4().hex


class Broker:
    """The test vhost as the tests see it: topology reset, confirmed publishing, queue counts."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.queue = config.rabbitmq.queue
        self.dead_letter_queue = dead_letter_queue(self.queue)

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        connection = pika.BlockingConnection(connection_parameters(self.config))
        return connection, connection.channel()

    def reset(self) -> None:
        """Delete and redeclare the queues: no message, unacked delivery or delivery count survives a test."""
        connection, channel = self._channel()
        try:
            channel.queue_delete(self.queue)
            channel.queue_delete(self.dead_letter_queue)
            declare_billing_queue(channel, self.queue)
        finally:
            connection.close()

    def publish_spaced(self, bodies: Iterable[bytes], gap_s: float) -> None:
        """Publish one message at a time on one connection, each confirmed, with `gap_s` between them: a stream
        that trickles in, as opposed to `publish`'s burst."""
        connection, channel = self._channel()
        try:
            channel.confirm_delivery()  # basic_publish now returns only once the broker confirmed
            for index, body in enumerate(bodies):
                if index:
                    time.sleep(gap_s)
                properties = pika.BasicProperties(delivery_mode=2, message_id=uuid.uuid4().hex)
                channel.basic_publish("", self.queue, body, properties, mandatory=True)
        finally:
            connection.close()

    def publish(self, bodies: Iterable[bytes | tuple[bytes, str | None]], timeout: float = 120.0) -> list[str | None]:
        """Publish persistent messages with publisher confirms, pipelined; return their message ids.

        Each item is a body (a new uuid4 message id) or (body, message_id) where None means no message id; the
        correlation id is request_id_of(message_id).
        Returns only once the broker has confirmed every one (and fails on any nack).
        """
        messages: list[tuple[bytes, pika.BasicProperties]] = []
        ids: list[str | None] = []
        for item in bodies:
            body, message_id = item if isinstance(item, tuple) else (item, uuid.uuid4().hex)
            ids.append(message_id)
            messages.append(
                (
                    body,
                    pika.BasicProperties(
                        delivery_mode=pika.DeliveryMode.Persistent,
                        content_type="application/json",
                        message_id=message_id,
                        # As the gateway sets it: the id of the request that placed the order.
                        correlation_id=request_id_of(message_id),
                        timestamp=int(time.time()),
                    ),
                )
            )
        publish_confirmed(connection_parameters(self.config)[0], self.queue, messages, timeout)
        return ids

    def consumer_count(self) -> int:
        connection, channel = self._channel()
        try:
            return channel.queue_declare(self.queue, passive=True).method.consumer_count
        finally:
            connection.close()

    def queue_counts(self, queue: str | None = None) -> tuple[int, int]:
        """(ready, unacknowledged) messages of a queue, as the broker reports them (a few seconds late)."""
        result = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", self.config.rabbitmq.vhost, "--no-table-headers",
             "name", "messages_ready", "messages_unacknowledged"],
            check=True, capture_output=True, text=True, timeout=60,
        )
        wanted = queue or self.queue
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if fields[0] == wanted:
                return int(fields[1]), int(fields[2])
        raise AssertionError(f"queue {wanted} does not exist")

    def take_dead(self) -> list[pika.BasicProperties]:
        """Remove and return the dead-lettered messages' properties."""
        connection, channel = self._channel()
        taken = []
        try:
            while True:
                method, properties, _body = channel.basic_get(self.dead_letter_queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append(properties)
        finally:
            connection.close()


class InProcessService:
    """The service's factory output run in a background thread (the process's own threads are untouched)."""

    def __init__(self, config: Config) -> None:
        self.service: BillingService = create_service(config)
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="billing-under-test", daemon=True)

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # surfaced by stop()
            self._errors.append(exc)

    @property
    def metrics(self) -> dict[str, float]:
        return counters(self.service.metrics.registry)

    def start(self) -> InProcessService:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.service.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the consumer did not stop"
        assert not self._errors, self._errors


def counters(registry: Any) -> dict[str, float]:
    """The *_total counter samples of a registry, by sample name."""
    return {
        sample.name: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


class ServerProcess:
    """server.py as PM2 runs it: its own process, settings from the environment, logs to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self._env, self._log_path = dict(env), log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self._log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.process = subprocess.Popen(
            [sys.executable, "server.py"], cwd=SERVICE_DIR, env=self._env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
