"""Prometheus metrics of the two HTTP services: every request by route, method and status, and its latency, plus
each service's own counters, served in the Prometheus text format on an address of their own (loopback by
default: an operator's, never the public port).

Under gunicorn each worker is a process of its own, so the counts are kept with prometheus_client's multiprocess
mode: every worker writes its values to files of one directory, and the master, which serves /metrics, adds
them up (`count_across_processes` before the workers exist, then `MetricsEndpoint.start` in gunicorn's
when_ready; serving.serve does both). Without it (a test's Flask client, one process), the values live in the
app's own registry, read the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app, multiprocess, values

from .errors import ApiError, wsgi_error
from .request_ids import new_request_id

log = logging.getLogger(__name__)

# Latency buckets, in seconds: from a cached read (~1 ms) to the longest bounded wait of a request (30 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A label's values must stay few: any other method is counted as "other", any unknown path as "unmatched".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class HttpMetrics:
    """Requests answered and their latency, by route (the route's pattern, e.g. /api/movies/<id>), method and
    status; in the app's own registry, which a service adds its own counters to."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("http_requests", "Requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds",
                                 "Time from the request's arrival to the end of its answer, by route and method.",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe(self, route: str | None, method: str, status: int, seconds: float) -> None:
        # A route with and without its trailing slash is one route.
        route = (route.rstrip("/") or "/") if route else UNMATCHED
        method = method if method in KNOWN_METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)


def counter_by(registry: CollectorRegistry, name: str, documentation: str, label: str,
               label_values: Iterable[str]) -> Counter:
    """A counter with one label whose every value is present from the start, at 0: a rate over a series that
    appears only with its first event is misread (no series, then a jump)."""
    counter = Counter(name, documentation, [label], registry=registry)
    for value in label_values:
        counter.labels(value)
    return counter


def count_across_processes(directory: Path) -> None:
    """From now on, every metric created in this process or a child forked from it keeps its values in files of
    `directory` (its value files removed first: an earlier run's must not add up with these; the directory itself
    is kept, with its owner and mode).

    prometheus_client picks where values live when it is first imported (from PROMETHEUS_MULTIPROC_DIR); it is
    picked again here, before any metric exists, so that the directory can come from the service's settings."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()


def count_in_files_as(directory: Path, process_name: str) -> None:
    """For a process beside a gunicorn master whose metrics that master serves (the gateway's front): from now
    on its metrics keep their values in the master's `directory`, in files named after `process_name` and the
    directory's generation rather than a pid.

    The master makes its directory anew at each start (serve's `metrics_dir`), and its workers' counts start
    again from 0; so do this process's then, at its next count, in files of the new generation: every series of
    the endpoint falls back to 0 at the same moment, which Prometheus reads as one reset. Were this process's
    counts to go on alone, a series both count would fall only by the workers' share, and Prometheus would take
    the rest for new events. While the master runs, this process may restart and take its counts up where it
    left them."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)

    def generation() -> str:
        # One stat per value written; a directory not made yet (the master starts later) is made here, and the
        # master's start replaces it with one of a new generation.
        try:
            inode = directory.stat().st_ino
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
            inode = directory.stat().st_ino
        return f"{process_name}-{inode}"

    values.ValueClass = values.MultiProcessValue(process_identifier=generation)


def worker_gone(directory: Path, pid: int) -> None:
    """A worker exited: its gauges go (its counters stay in the sums, as Prometheus expects of counters)."""
    multiprocess.mark_process_dead(pid, str(directory))


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # a scrape every few seconds is not worth an access line


class MetricsEndpoint:
    """GET /metrics on its own address, in a thread of the process that owns the values (gunicorn's master);
    anything else is answered in the platform's JSON error shape."""

    def __init__(self, host: str, port: int, registry_factory: Callable[[], CollectorRegistry]) -> None:
        self.host, self.port = host, port
        self._registry_factory = registry_factory
        self._server: WSGIServer | None = None

    @classmethod
    def across_processes(cls, host: str, port: int, directory: Path) -> MetricsEndpoint:
        def registry() -> CollectorRegistry:
            summed = CollectorRegistry()
            multiprocess.MultiProcessCollector(summed, path=str(directory))
            return summed

        return cls(host, port, registry)

    def start(self) -> None:
        metrics_app = make_wsgi_app(self._registry_factory())
        self._server = make_server(self.host, self.port, _routed(metrics_app), server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)

    def close_listener(self) -> None:
        """In a forked child: its copy of the listening socket, which only the parent serves."""
        if self._server is not None:
            self._server.socket.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _routed(metrics_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path != "/metrics":
            error = ApiError(404, "the only resource here is /metrics")
        elif method not in ("GET", "HEAD"):
            error = ApiError(405, f"{method[:20]} is not allowed on /metrics")
        else:
            return metrics_app(environ, start_response)
        status, headers, body = wsgi_error(error, new_request_id())
        if error.status == 405:
            headers.append(("Allow", "GET, HEAD"))
        start_response(status, headers)
        return [body]

    return app
