"""How an HTTP service is served: gunicorn inside `server.py`, with a worker whose stop drops nothing, its own
refusals in the platform's JSON error shape, its log escaped, and the request limits both services share."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gunicorn.glogging
import gunicorn.util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker

from .errors import ApiError, code_for, shorten, wsgi_error
from .logs import EscapingFormatter
from .metrics import MetricsEndpoint, count_across_processes, worker_gone
from .request_ids import new_request_id
from .settings import HttpServerSettings, MetricsSettings

# What the HTTP server accepts of a request, the same on both services: the gateway checks that what it
# forwards stays within them (api-gateway/app/proxy.py), so a request it accepted is never refused behind it.
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190
REQUEST_LIMITS = {
    "limit_request_line": MAX_REQUEST_LINE,
    "limit_request_fields": MAX_HEADER_FIELDS,
    "limit_request_field_size": MAX_HEADER_FIELD_BYTES,
}
# gunicorn finishes in-flight requests within this on SIGTERM; PM2's kill_timeout (config.yaml) is above it.
GRACEFUL_TIMEOUT_S = 20


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error, but the body is the platform's JSON error shape instead of an HTML page. Its
    request id is new (the request could not be parsed) and the same in the body and in X-Request-ID."""
    error = ApiError(status_int, shorten(mesg or reason, 200), code=code_for(status_int))
    status, headers, body = wsgi_error(error, new_request_id())
    head = f"HTTP/1.1 {status}\r\nConnection: close\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    gunicorn.util.write_nonblock(sock, (head + "\r\n").encode("latin-1") + body)


class DrainingThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes.

    A graceful stop serves every connection the kernel already queued. gthread stops accepting on SIGTERM yet
    keeps its listening socket open until its last request is done; the connections that queue meanwhile are
    reset when it finally closes, so under load a `pm2 restart` would cut off requests clients had already
    sent. This worker takes the queue and closes the socket at once instead: a client is either served, or
    refused before sending anything (and may safely retry).

    A request gunicorn cannot parse (a request line over the limit, oversized headers, a bad chunk) is answered
    in the platform's JSON error shape, not with gunicorn's HTML page.
    """

    @classmethod
    def setup(cls) -> None:
        # gunicorn calls a worker class's setup() once, in the master, before forking; handle_error() writes
        # its answer through gunicorn.util.write_error, which has no other hook.
        gunicorn.util.write_error = write_json_error

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._serve_queued_then_stop_listening()

    def _serve_queued_then_stop_listening(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except OSError:  # EAGAIN: the queue is empty
                    break
                self.nr_conns += 1
                client.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            # The master closed its copy before signalling (config.yaml: PM2 signals the master alone), so the
            # last worker to get here closes the socket.
            listener.close()


class GunicornLogger(gunicorn.glogging.Logger):
    """gunicorn's own log (its start, its workers, requests it could not parse), escaped like the service's."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(EscapingFormatter(self.error_fmt, self.datefmt))


class GunicornServer(BaseApplication):
    """gunicorn's documented custom-application hook, fed from the service's settings instead of a config file.

    `load_app` is called in each worker, after the fork: whatever it builds (connection pools, AMQP connections,
    the database engine) belongs to that worker alone.
    """

    def __init__(self, load_app: Callable[[], Any], *, name: str, bind: str, workers: int, threads: int,
                 keepalive: int, hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self._load_app = load_app
        self._settings = {
            "bind": bind,
            "workers": workers,
            "worker_class": DrainingThreadWorker,
            "threads": threads,
            "keepalive": keepalive,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            # Above every bounded wait of a request (the gateway's inventory and AMQP timeouts, the database's).
            "timeout": 30,
            **REQUEST_LIMITS,
            "errorlog": "-",
            "logger_class": GunicornLogger,
            "loglevel": "info",
            "proc_name": name,
            # gunicorn's control socket is one path per user ($HOME/.gunicorn/gunicorn.ctl), which every gunicorn
            # of the machine would share; PM2 is the controller here.
            "control_socket_disable": True,
            **(hooks or {}),
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._load_app()


def serve(server: HttpServerSettings, load_app: Callable[[], Any], *, name: str, keepalive: int,
          bind: str | None = None, metrics: MetricsSettings | None = None, metrics_dir: Path | None = None) -> None:
    """Run gunicorn in this process until SIGTERM, with `load_app` run in each worker after the fork: on `bind`
    (e.g. "unix:/path"), else on `server`'s host and port; its workers and threads are `server`'s
    (HttpServerSettings). With `metrics` (MetricsSettings), the workers' metrics are added up and served there
    by the master; their values live in `metrics_dir` (made anew at each start; a directory of its own if none
    is given), where a process beside the master may count too (crud_common.metrics.count_in_files_as)."""
    hooks = _metrics_hooks(name, metrics, metrics_dir) if metrics is not None else None
    GunicornServer(load_app, name=name, bind=bind or f"{server.host}:{server.port}", workers=server.workers,
                   threads=server.threads, keepalive=keepalive, hooks=hooks).run()


def _metrics_hooks(name: str, metrics: MetricsSettings,
                   directory: Path | None = None) -> dict[str, Callable[..., Any]]:
    """gunicorn's hooks for metrics kept across its workers: the values' directory is this master's own (made
    now, before any worker exists, and removed when it exits), the endpoint a thread of the master."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix=f"{name}-metrics-"))
    else:
        # Made anew, not emptied: a process beside the master tells its generation by the directory's identity.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    count_across_processes(directory)
    endpoint = MetricsEndpoint.across_processes(metrics.host, metrics.port, directory)

    def on_exit(_arbiter: Any) -> None:
        endpoint.stop()
        shutil.rmtree(directory, ignore_errors=True)

    return {
        "when_ready": lambda _arbiter: endpoint.start(),
        "post_fork": lambda _arbiter, _worker: endpoint.close_listener(),
        "child_exit": lambda _arbiter, worker: worker_gone(directory, worker.pid),
        "on_exit": on_exit,
    }
