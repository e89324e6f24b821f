"""Reverse proxy to the inventory: /api/movies and everything below it, every method.

The request goes on as the client sent it (method, raw path, query string, body, end-to-end headers) and the
inventory's answer comes back unmodified; the gateway only sets X-Request-ID. Failures of the inventory itself
become the gateway's own JSON errors: 502 (unreachable, refused, reset), 504 (no answer in time), 503 (the
gateway's connection pool to it is exhausted).

The proxy is a WSGI application of its own, mounted in front of Flask (`mount`). It parses nothing it
forwards, so Flask's request and response objects would be pure cost, and they cost more than the proxying
itself (bench/README.md). It keeps the gateway's conventions all the same: the request id, the access line,
the JSON error shape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import (
    EmptyPoolError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from .config import Config
from .errors import CODES, ApiError, error_document
from .observability import log_access, request_id_from

log = logging.getLogger(__name__)

PREFIX = "/api/movies"
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# RFC 9110 section 7.6.1 hop-by-hop headers, plus those the proxy recomputes itself: Host (the inventory's),
# Content-Length (of the body actually sent), and Server/Date (gunicorn writes its own).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED_REQUEST = HOP_BY_HOP | {"host", "content-length", "x-request-id"}
_NOT_RETURNED_RESPONSE = HOP_BY_HOP | {"content-length", "x-request-id", "server", "date"}


class _RetryUnlessTimedOut(urllib3.Retry):
    """urllib3's Retry, except that a read timeout is never retried: it would send the request to a slow
    inventory twice and make the client wait twice as long."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):  # noqa: ANN001, ANN201 - urllib3's signature
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class InventoryClient:
    """One keep-alive connection pool per process (urllib3 pools are thread-safe), sized for every thread."""

    def __init__(self, config: Config) -> None:
        parts = urlsplit(config.inventory_url)
        self.base_path = parts.path.rstrip("/")
        self.max_body_bytes = config.max_upstream_body_bytes
        self.timeout = urllib3.Timeout(connect=config.inventory_connect_timeout_s, read=config.inventory_read_timeout_s)
        self.health_timeout = urllib3.Timeout(connect=config.health_timeout_s, read=config.health_timeout_s)
        # A thread holds at most one connection, so with maxsize == threads and block=True a thread waits for a
        # connection only when something is badly wrong; that wait is bounded by pool_timeout.
        self.pool_timeout = config.inventory_connect_timeout_s
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=config.threads, block=True).connection_from_url(
            config.inventory_url
        )
        # Retried only when the inventory cannot act twice: any method whose connect was refused or timed out
        # (it never arrived), and an idempotent method whose connection was reset or closed (typically a pooled
        # connection the inventory closed as it restarted). A POST or PATCH that may have arrived is never
        # sent again, and nothing is retried after a read timeout (the inventory has the request and is slow).
        self._idempotent_retries = _RetryUnlessTimedOut(
            total=3, connect=2, read=1, status=0, other=0, redirect=False, raise_on_status=False, backoff_factor=0.05
        )
        self._other_retries = _RetryUnlessTimedOut(
            total=2, connect=2, read=0, status=0, other=0, redirect=False, raise_on_status=False, backoff_factor=0.05
        )

    def request(
        self, method: str, path_and_query: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        response = self._pool.urlopen(
            method,
            self.base_path + path_and_query,
            body=body,
            headers=headers,
            retries=self._idempotent_retries if method in IDEMPOTENT_METHODS else self._other_retries,
            timeout=self.timeout,
            pool_timeout=self.pool_timeout,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,  # the client gets the bytes as sent, with their Content-Encoding
        )
        try:
            data = response.read(self.max_body_bytes + 1)
            if len(data) > self.max_body_bytes:
                response.close()  # the rest is unread: this connection cannot serve another request
                raise ApiError(502, f"the inventory's answer is larger than {self.max_body_bytes} bytes")
            return UpstreamResponse(response.status, response.reason or "", list(response.headers.iteritems()), data)
        finally:
            response.release_conn()

    def health(self) -> tuple[bool, str]:
        """(healthy, reason), within health_timeout whatever the inventory does."""
        try:
            response = self._pool.urlopen(
                "GET", self.base_path + "/health", retries=False, timeout=self.health_timeout,
                pool_timeout=self.health_timeout.connect_timeout, redirect=False, preload_content=True,
            )
        except (HTTPError, OSError) as exc:
            return False, _describe(exc)
        if response.status != 200:
            return False, f"GET /health answered {response.status}"
        return True, "GET /health answered 200"


def _describe(exc: BaseException) -> str:
    cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    return f"{type(cause).__name__}: {cause}"


WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


def mount(proxy: WSGIApp, fallback: WSGIApp) -> WSGIApp:
    """/api/movies and everything below it go to the proxy; every other path to the fallback (Flask)."""

    def dispatch(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return proxy(environ, start_response)
        return fallback(environ, start_response)

    return dispatch


class InventoryProxy:
    """The WSGI application of the proxied paths."""

    def __init__(self, client: InventoryClient, max_body_bytes: int) -> None:
        self.client = client
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        method = environ["REQUEST_METHOD"]
        target = _target(environ)
        try:
            status, headers, body = self._forward(environ, method, target, request_id)
        except ApiError as exc:
            status, headers, body = _error_answer(exc.status, exc.code, exc.message, request_id, exc.details)
            if exc.status == 405:
                headers.append(("Allow", ", ".join(PROXIED_METHODS)))
        except Exception:  # the shared shape even for a bug; the log has the trace
            log.exception("unhandled error proxying %s %s", method, target)
            message = "internal error; see the gateway log for this request id"
            status, headers, body = _error_answer(500, CODES[500], message, request_id)
        headers.append(("X-Request-ID", request_id))
        start_response(status, headers)
        log_access(method, target, int(status[:3]), started, request_id, "inventory")
        return [] if method == "HEAD" else [body]

    def _forward(
        self, environ: WSGIEnviron, method: str, target: str, request_id: str
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        if method not in PROXIED_METHODS:
            raise ApiError(405, f"{method} is not allowed on {environ.get('PATH_INFO', '')}")
        body = self._request_body(environ)
        try:
            upstream = self.client.request(method, target, _forwarded_headers(environ, request_id), body)
        except EmptyPoolError:
            raise ApiError(503, "the gateway has no free connection to the inventory, try again later") from None
        except ReadTimeoutError:
            log.warning("inventory timeout: %s %s", method, target)
            raise ApiError(504, "the inventory did not answer in time") from None
        except MaxRetryError as exc:
            if isinstance(exc.reason, ReadTimeoutError):
                raise ApiError(504, "the inventory did not answer in time") from None
            log.warning("inventory unreachable: %s", _describe(exc))
            raise ApiError(502, "the inventory is unreachable") from None
        except (NewConnectionError, ProtocolError, HTTPError, OSError) as exc:
            log.warning("inventory failed: %s", _describe(exc))
            raise ApiError(502, "the inventory closed the connection or answered garbage") from None
        return f"{upstream.status} {upstream.reason}".strip(), _returned_headers(upstream, method), upstream.body

    def _request_body(self, environ: WSGIEnviron) -> bytes | None:
        """The body, at most max_body_bytes (413 otherwise), whether its length is announced or it is chunked."""
        stream = environ["wsgi.input"]
        announced = environ.get("CONTENT_LENGTH") or ""
        if announced:
            if not announced.isdigit():
                raise ApiError(400, "Content-Length is not a number", details=[
                    {"field": "Content-Length", "reason": "must be a number of bytes"}])
            if int(announced) > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            body = stream.read(int(announced))
        else:
            body = stream.read(self.max_body_bytes + 1)
            if len(body) > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
        return body or None


def _too_large(limit: int) -> ApiError:
    reason = f"the body is larger than the {limit} bytes allowed"
    return ApiError(413, reason, details=[{"field": "body", "reason": reason}])


def _error_answer(
    status: int, code: str, message: str, request_id: str, details: list[dict[str, str]] | None = None
) -> tuple[str, list[tuple[str, str]], bytes]:
    # As Flask writes its JSON: compact, UTF-8, one line.
    document = error_document(code, message, request_id, details)
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    reason = _REASONS.get(status, "Error")
    return f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


_REASONS = {400: "Bad Request", 405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _target(environ: WSGIEnviron) -> str:
    """The path and query as the client wrote them: decoding and re-encoding could change them (%2F would
    become /). Bytes outside printable ASCII, which a client should have escaped, are %-escaped as they are,
    so the inventory decodes the very bytes the client sent."""
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    raw_path = raw_uri.split("?", 1)[0]
    path = raw_path if raw_path.startswith("/") else quote(environ.get("PATH_INFO", ""), safe="/", encoding="latin-1")
    target = quote(path, safe=_PRINTABLE_ASCII, encoding="latin-1")
    query = environ.get("QUERY_STRING", "")
    if query:
        target += "?" + quote(query, safe=_PRINTABLE_ASCII, encoding="latin-1")
    return target


# Everything a request target may hold as it is, '%' included (escapes already there stay as they are).
_PRINTABLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


def _connection_tokens(values: Iterable[str]) -> set[str]:
    """Header names a Connection header declares hop-by-hop for this one connection."""
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


def _forwarded_headers(environ: WSGIEnviron, request_id: str) -> dict[str, str]:
    skip = _NOT_FORWARDED_REQUEST | _connection_tokens([environ.get("HTTP_CONNECTION", "")])
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
            if name.lower() not in skip:
                headers[name] = value
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    headers["X-Request-ID"] = request_id
    client = environ.get("REMOTE_ADDR", "")
    previous = environ.get("HTTP_X_FORWARDED_FOR")
    headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
    return headers


def _returned_headers(upstream: UpstreamResponse, method: str) -> list[tuple[str, str]]:
    skip = _NOT_RETURNED_RESPONSE | _connection_tokens(
        value for name, value in upstream.headers if name.lower() == "connection"
    )
    headers = [(name, value) for name, value in upstream.headers if name.lower() not in skip]
    if method == "HEAD":
        # No body to measure: keep the length the inventory announced for the GET.
        headers += [(name, value) for name, value in upstream.headers if name.lower() == "content-length"]
    elif upstream.status not in (204, 304):
        headers.append(("Content-Length", str(len(upstream.body))))
    return headers
