"""Test support the services' suites, the system tests and the bench share: waiting for something to happen,
free ports, and publishing a confirmed backlog of messages fast."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], *, timeout_s: float = 30, every_s: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy, and return that; a failure naming `what` never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


def environ_for_tests(**overrides: str) -> dict[str, str]:
    """The platform's settings (.env under the process's environment) with `overrides`: each suite points its
    service at its test database and vhost from here."""
    from .settings import environment

    return {**environment(), **overrides}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout_s: float = 2) -> int | None:
    """The status a GET of `url` answers, or None when nothing answers (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_exchange(port: int, request: bytes, *, half_close: bool = False, timeout_s: float = 10) -> RawAnswer:
    """Send bytes no HTTP client library would send, on a new connection, and read the answer to its end (the
    request should ask for `Connection: close`, or be one the server closes after). With `half_close`, the
    client then closes its sending side, as one that gave up in the middle of its upload does."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    return RawAnswer(int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), body)


class Served:
    """A service's `server.py` (or another entry point) running for real, started and stopped by a test (or used
    as a context manager); `output` holds everything it logged, once it stopped."""

    def __init__(self, service_dir: Path, python: Path | str, environ: Mapping[str, str], port: int,
                 ready_path: str = "/health", *, script: str = "server.py",
                 ready: Callable[[], bool] | None = None) -> None:
        self.service_dir, self.python, self.environ = service_dir, python, dict(environ)
        self.port, self.ready_path, self.script = port, ready_path, script
        self._ready = ready or (lambda: http_status(self.base + self.ready_path) is not None)
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        """Start it, and return once it is ready: by default, once it answers `ready_path` (any status)."""
        # Its output goes to a file, not a pipe: a pipe nobody reads while it runs fills up after a few hundred
        # log lines, and then the server blocks in its logging.
        self._log = log = tempfile.TemporaryFile("w+")
        self.process = process = subprocess.Popen(
            [str(self.python), self.script], cwd=self.service_dir, env=self.environ,
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        try:
            wait_for(f"{self.service_dir.name}/{self.script} to be ready",
                     lambda: process.poll() is not None or self._ready())
            assert process.poll() is None, f"{self.service_dir.name} exited with {process.returncode}"
        except BaseException:
            self.stop()  # never leave a server behind
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, as PM2 stops it, and collect its output."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.returncode = process.returncode
        self._log.seek(0)
        self.output = self._log.read()
        self._log.close()

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def alembic_config(service_dir: Path, database_url: Any) -> Any:
    """The service's Alembic config, pointed at `database_url` (a test database) and leaving logging alone."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig(str(service_dir / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def migrate(service_dir: Path, database_url: Any) -> Any:
    """Upgrade the service's test database to head; its URL, for fixtures that go on with it."""
    from alembic import command

    command.upgrade(alembic_config(service_dir, database_url), "head")
    return database_url


def check_migrations(service_dir: Path, database_url: Any, metadata: Any, *, table: str, head: str) -> None:
    """The schema is owned by the migrations: down to base (`table` gone), up again (`table` back, at `head`),
    and exactly the tables the models describe."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine, inspect, text

    config = alembic_config(service_dir, database_url)
    engine = create_engine(database_url)
    try:
        command.downgrade(config, "base")
        assert table not in inspect(engine).get_table_names()
        command.upgrade(config, "head")
        assert table in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == head
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()


class NotConfirmed(RuntimeError):
    """Some messages of a backlog were not confirmed by the broker (nacked, returned, or never answered)."""


def publish_confirmed(parameters: Any, queue: str, messages: Sequence[tuple[bytes, Any]],
                      timeout_s: float = 120) -> None:
    """Publish every (body, properties) to `queue` through the default exchange, mandatory, and return once the
    broker confirmed them all; NotConfirmed otherwise.

    pika's BlockingChannel waits for each confirm in turn; its asynchronous adapter keeps them all in flight,
    so tens of thousands take seconds.
    """
    import pika

    unconfirmed = set(range(1, len(messages) + 1))
    confirmed_up_to = 0
    failures: list[str] = []

    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        channel.add_on_close_callback(on_channel_closed)
        # mandatory: the broker confirms a message no queue took, and returns it; a return is a failure here.
        channel.add_on_return_callback(lambda *_: failures.append("a message was returned as unroutable"))
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: publish_all(channel))

    def publish_all(channel: Any) -> None:
        for body, properties in messages:
            channel.basic_publish("", queue, body, properties, mandatory=True)

    def on_channel_closed(_channel: Any, reason: Exception) -> None:
        if unconfirmed:
            failures.append(f"the channel closed: {reason!r}")
        close()

    def on_confirm(frame: Any) -> None:
        nonlocal confirmed_up_to
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            failures.append(f"the broker nacked delivery {method.delivery_tag}")
        if method.multiple:
            for tag in range(confirmed_up_to + 1, method.delivery_tag + 1):
                unconfirmed.discard(tag)
            confirmed_up_to = max(confirmed_up_to, method.delivery_tag)
        else:
            unconfirmed.discard(method.delivery_tag)
        if not unconfirmed:
            close()

    def close() -> None:
        if connection.is_open:
            connection.close()

    def on_close(_connection: Any, reason: Exception) -> None:
        if unconfirmed:
            failures.append(f"the connection closed with {len(unconfirmed)} messages unconfirmed: {reason!r}")
        connection.ioloop.stop()

    def on_open_error(_connection: Any, error: Exception) -> None:
        failures.append(f"cannot connect: {error!r}")
        connection.ioloop.stop()

    def on_timeout() -> None:
        failures.append(f"{len(unconfirmed)} messages unconfirmed after {timeout_s}s")
        close()

    if not messages:
        return
    connection = pika.SelectConnection(parameters, on_open_callback=on_open, on_open_error_callback=on_open_error,
                                       on_close_callback=on_close)
    timer = connection.ioloop.call_later(timeout_s, on_timeout)
    connection.ioloop.start()
    connection.ioloop.remove_timeout(timer)
    if failures:
        raise NotConfirmed("; ".join(failures))
