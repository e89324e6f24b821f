"""Helpers shared by the tests: the test environment, a confirmed publisher, broker probes, polling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pika
from alembic.config import Config as AlembicConfig
from dotenv import load_dotenv
from sqlalchemy.engine import URL

from app import BillingService, create_service
from app.config import Config
from app.consumer import connection_parameters, declare_topology

SERVICE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SERVICE_DIR.parents[1]

load_dotenv(REPO_ROOT / ".env", override=False)

T = TypeVar("T")


def test_environment(**overrides: str) -> dict[str, str]:
    """The service's environment, pointed at the test database and the test vhost.

    The queue gets a suite-specific name (its .dlx/.dead names derive from it as in production), so that
    this suite never races the gateway's or the system tests' use of billing_queue on the same vhost.
    """
    env = dict(os.environ)
    env["BILLING_DB_NAME"] = env["BILLING_TEST_DB_NAME"]
    env["RABBITMQ_VHOST"] = env["RABBITMQ_TEST_VHOST"]
    env["RABBITMQ_QUEUE"] = env["RABBITMQ_QUEUE"] + "_billing_suite"
    env["BILLING_STATUS_PORT"] = "0"
    # Short backoff ceilings so that recoveries happen within a test's deadline.
    env["BILLING_RECONNECT_MAX_S"] = "2"
    env["BILLING_DB_RETRY_MAX_S"] = "1"
    env.update(overrides)
    return env


test_environment.__test__ = False  # a helper, not a test (pytest collects test_* names)


def alembic_config(database_url: URL) -> AlembicConfig:
    cfg = AlembicConfig(str(SERVICE_DIR / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


def wait_for(what: str, probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll until probe() returns something truthy; fail with `what` and the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def order(user_id: Any = 1, number_of_items: Any = 2, total_amount: Any = "10.50", **extra: Any) -> bytes:
    fields = {"user_id": user_id, "number_of_items": number_of_items, "total_amount": total_amount, **extra}
    return json.dumps(fields).encode()


class Broker:
    """The test vhost as the tests see it: topology reset, confirmed publishing, queue counts."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        connection = pika.BlockingConnection(connection_parameters(self.config))
        return connection, connection.channel()

    def reset(self) -> None:
        """Delete and redeclare the queues: no message, unacked delivery or delivery count survives a test."""
        connection, channel = self._channel()
        try:
            channel.queue_delete(self.config.queue)
            channel.queue_delete(self.config.dead_letter_queue)
            declare_topology(channel, self.config)
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
                channel.basic_publish("", self.config.queue, body, properties, mandatory=True)
        finally:
            connection.close()

    def publish(self, bodies: Iterable[bytes | tuple[bytes, str | None]], timeout: float = 120.0) -> list[str | None]:
        """Publish persistent messages with publisher confirms, pipelined; return their message ids.

        Each item is a body (a new uuid4 message id) or (body, message_id) where None means no message id.
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
                        correlation_id=uuid.uuid4().hex,
                        timestamp=int(time.time()),
                    ),
                )
            )
        _publish_confirmed(connection_parameters(self.config), self.config.queue, messages, timeout)
        return ids

    def consumer_count(self) -> int:
        connection, channel = self._channel()
        try:
            return channel.queue_declare(self.config.queue, passive=True).method.consumer_count
        finally:
            connection.close()

    def queue_counts(self, queue: str | None = None) -> tuple[int, int]:
        """(ready, unacknowledged) messages of a queue, as the broker reports them (a few seconds late)."""
        result = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", self.config.rabbitmq_vhost, "--no-table-headers",
             "name", "messages_ready", "messages_unacknowledged"],
            check=True, capture_output=True, text=True, timeout=60,
        )
        wanted = queue or self.config.queue
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
                method, properties, _body = channel.basic_get(self.config.dead_letter_queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append(properties)
        finally:
            connection.close()


def _publish_confirmed(
    parameters: pika.ConnectionParameters,
    queue: str,
    messages: list[tuple[bytes, pika.BasicProperties]],
    timeout: float,
) -> None:
    # BlockingChannel waits for each confirm in turn (about 1 ms per message on a quorum queue); the async
    # adapter keeps them all in flight, so a 20,000-message backlog takes a second or two.
    outstanding = set(range(1, len(messages) + 1))
    failures: list[str] = []

    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        channel.add_on_return_callback(lambda *_: failures.append("a message was returned as unroutable"))
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: publish_all(channel))

    def publish_all(channel: Any) -> None:
        for body, properties in messages:
            channel.basic_publish("", queue, body, properties, mandatory=True)
        if not messages:
            channel.connection.close()

    def on_confirm(frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            failures.append(f"the broker nacked delivery {method.delivery_tag}")
        done = [tag for tag in outstanding if tag <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        outstanding.difference_update(done)
        if not outstanding:
            connection.close()

    def on_close(connection: pika.SelectConnection, reason: Exception) -> None:
        if outstanding:
            failures.append(f"connection closed with {len(outstanding)} unconfirmed: {reason!r}")
        connection.ioloop.stop()

    def on_open_error(connection: pika.SelectConnection, error: Exception) -> None:
        failures.append(f"cannot connect: {error!r}")
        connection.ioloop.stop()

    def on_timeout() -> None:
        failures.append(f"{len(outstanding)} messages unconfirmed after {timeout}s")
        connection.close()

    connection = pika.SelectConnection(
        parameters, on_open_callback=on_open, on_open_error_callback=on_open_error, on_close_callback=on_close
    )
    connection.ioloop.call_later(timeout, on_timeout)
    connection.ioloop.start()
    assert not failures, failures


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
