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
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
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
from .errors import CODES, ApiError, BrokenStream, error_document, shorten
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
_NOT_RETURNED_RESPONSE = HOP_BY_HOP | {"x-request-id", "server", "date"}
# What the inventory's HTTP server accepts (gunicorn's limits, the same on both services: serving.py).
UPSTREAM_MAX_REQUEST_LINE = 8190
UPSTREAM_MAX_HEADER_FIELDS = 100
UPSTREAM_MAX_FIELD_BYTES = 8190
# The size of the pieces in which a streamed answer is relayed.
RELAY_CHUNK_BYTES = 64 * 1024


class _RetryUnlessTimedOut(urllib3.Retry):
    """urllib3's Retry, except that a read timeout is never retried: it would send the request to a slow
    inventory twice and make the client wait twice as long."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):  # noqa: ANN001, ANN201 - urllib3's signature
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


class InventoryClient:
    """One keep-alive connection pool per process (urllib3 pools are thread-safe), sized for every thread."""

    def __init__(self, config: Config) -> None:
        parts = urlsplit(config.inventory_url)
        self.base_path = parts.path.rstrip("/")
        self.host_header = parts.netloc
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
    ) -> urllib3.BaseHTTPResponse:
        """The inventory's answer once its headers arrived; the caller reads (or streams) the body, then releases
        the connection (`release_conn`) or, if it stopped before the end, drops it (`close`)."""
        return self._pool.urlopen(
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
            upstream = self._forward(environ, method, target, request_id)
        except ApiError as exc:
            status, headers, body = _error_answer(exc.status, exc.code, exc.message, request_id, exc.details)
            if exc.status == 405:
                headers.append(("Allow", _allowed_methods(environ.get("PATH_INFO", ""))))
            headers.append(("X-Request-ID", request_id))
            start_response(status, headers)
            log_access(method, target, exc.status, started, request_id, "inventory")
            return [body]
        except Exception:  # the shared shape even for a bug; the log has the trace
            log.exception("unhandled error proxying %s %s", method, target)
            message = "internal error; see the gateway log for this request id"
            status, headers, body = _error_answer(500, CODES[500], message, request_id)
            headers.append(("X-Request-ID", request_id))
            start_response(status, headers)
            log_access(method, target, 500, started, request_id, "inventory")
            return [body]
        headers = _returned_headers(upstream, method)
        headers.append(("X-Request-ID", request_id))
        start_response(f"{upstream.status} {upstream.reason}".strip(), headers)
        return RelayedBody(upstream, method, lambda: log_access(
            method, target, upstream.status, started, request_id, "inventory"))

    def _forward(
        self, environ: WSGIEnviron, method: str, target: str, request_id: str
    ) -> urllib3.BaseHTTPResponse:
        if method not in PROXIED_METHODS:
            raise ApiError(405, f"{method} is not allowed on {shorten(environ.get('PATH_INFO', ''))}")
        body = self._request_body(environ)
        headers = _forwarded_headers(environ, request_id, self.client.host_header)
        _check_upstream_limits(method, self.client.base_path + target, headers)
        try:
            return self.client.request(method, target, headers, body)
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

    def _request_body(self, environ: WSGIEnviron) -> bytes | None:
        """The whole body, at most max_body_bytes (413 otherwise), whether its length is announced or it is
        chunked; a body shorter than announced, or a malformed chunked one, is a 400 and is not forwarded."""
        stream = environ["wsgi.input"]
        announced = environ.get("CONTENT_LENGTH") or ""
        if announced and not announced.isdigit():
            raise ApiError(400, "Content-Length is not a number", details=[
                {"field": "Content-Length", "reason": "must be a number of bytes"}])
        if announced and int(announced) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        try:
            body = stream.read(int(announced)) if announced else stream.read(self.max_body_bytes + 1)
        except Exception:  # noqa: BLE001 - what the HTTP server raises for a malformed chunked body or a cut upload
            raise _body_error("could not be read: malformed chunked encoding, or the upload was cut off") from None
        if announced and len(body) != int(announced):
            raise _body_error(f"is shorter than its Content-Length ({len(body)} of {announced} bytes)")
        if len(body) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        return body or None


class RelayedBody:
    """The inventory's body, relayed to the client as it arrives: memory stays flat however long the answer (the
    whole list of movies is streamed). The upstream connection goes back to the pool once the body is read to
    its end, and is dropped if the client leaves before. If the inventory fails in the middle, the client's
    connection is cut too (BrokenStream): an answer that lost its end must never look complete."""

    def __init__(self, upstream: urllib3.BaseHTTPResponse, method: str, on_close: Callable[[], None]) -> None:
        self._upstream = upstream
        self._method = method
        self._on_close = on_close
        self._complete = method == "HEAD"  # a HEAD answer has no body to relay

    def __iter__(self) -> Iterator[bytes]:
        if self._complete:
            return
        try:
            yield from self._upstream.stream(RELAY_CHUNK_BYTES, decode_content=False)
        except (HTTPError, OSError) as exc:
            log.warning("the inventory's answer was cut off: %s", _describe(exc))
            raise BrokenStream("the inventory's answer was cut off") from None
        self._complete = True

    def close(self) -> None:
        if self._complete:
            self._upstream.drain_conn()  # nothing left to read: the connection goes back to the pool
        else:
            self._upstream.close()  # unread bytes left (the client left early): it cannot serve another request
        self._upstream.release_conn()
        self._on_close()


def _allowed_methods(path: str) -> str:
    """What the inventory serves on this path (the Allow of its own 405s), for the gateway's 405 of a method it
    does not forward at all (TRACE, CONNECT, an unknown one)."""
    if path.rstrip("/") == PREFIX:
        return "GET, HEAD, POST, DELETE, OPTIONS"
    return "GET, HEAD, PUT, DELETE, OPTIONS"


def _too_large(limit: int) -> ApiError:
    reason = f"the body is larger than the {limit} bytes allowed"
    return ApiError(413, reason, details=[{"field": "body", "reason": reason}])


def _body_error(reason: str) -> ApiError:
    return ApiError(400, f"the body {reason}", details=[{"field": "body", "reason": reason}])


def _error_answer(
    status: int, code: str, message: str, request_id: str, details: list[dict[str, str]] | None = None
) -> tuple[str, list[tuple[str, str]], bytes]:
    # As Flask writes its JSON: compact, UTF-8, one line.
    document = error_document(code, message, request_id, details)
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    return f"{status} {HTTPStatus(status).phrase}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


def _target(environ: WSGIEnviron) -> str:
    """The path and query as the client wrote them: decoding and re-encoding could change them (%2F would
    become /). gunicorn refuses a request target with bytes outside printable ASCII, so the raw target goes on
    as it is; the fallback, for a server that gives no raw target, %-escapes what would need it."""
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


def _forwarded_headers(environ: WSGIEnviron, request_id: str, host: str) -> dict[str, str]:
    skip = _NOT_FORWARDED_REQUEST | _connection_tokens([environ.get("HTTP_CONNECTION", "")])
    headers: dict[str, str] = {"Host": host}
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


def _check_upstream_limits(method: str, target: str, headers: dict[str, str]) -> None:
    """Refuse here, with this request's id, what the inventory's HTTP server would refuse: the request as
    forwarded (under the inventory URL's path, repeated headers joined into one line, X-Request-ID and
    X-Forwarded-For added) may exceed the limits the client's request met on the way in."""
    if len(f"{method} {target} HTTP/1.1") > UPSTREAM_MAX_REQUEST_LINE:
        raise ApiError(414, f"the request line is too long to forward to the inventory (at most "
                            f"{UPSTREAM_MAX_REQUEST_LINE} bytes)")
    # Host is in `headers`; http.client may add Accept-Encoding, User-Agent and Content-Length.
    forwardable = UPSTREAM_MAX_HEADER_FIELDS - 3
    if len(headers) > forwardable:
        raise ApiError(431, f"too many header fields to forward to the inventory: {len(headers)}, with Host, "
                            f"X-Request-ID and X-Forwarded-For, of at most {forwardable}")
    for name, value in headers.items():
        if len(name) + 2 + len(value) > UPSTREAM_MAX_FIELD_BYTES:
            raise ApiError(431, f"header {shorten(name)} is too large to forward (at most "
                                f"{UPSTREAM_MAX_FIELD_BYTES} bytes, repeated headers joined)")


def _returned_headers(upstream: urllib3.BaseHTTPResponse, method: str) -> list[tuple[str, str]]:
    """The inventory's headers minus the hop-by-hop ones; Content-Length stays, as the body is relayed byte for
    byte (when the inventory streams without one, so does the gateway: chunked)."""
    items = list(upstream.headers.iteritems())
    skip = _NOT_RETURNED_RESPONSE | _connection_tokens(value for name, value in items if name.lower() == "connection")
    return [(name, value) for name, value in items if name.lower() not in skip]
