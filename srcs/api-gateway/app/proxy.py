"""Reverse proxy to the inventory: /api/movies and everything below it.

The request goes on as the client sent it (method, raw path, query string, body, end-to-end headers) and the
inventory's answer comes back unmodified, its body relayed as it arrives; the gateway only sets X-Request-ID.
Failures of the inventory itself become the gateway's own JSON errors: 502 (unreachable, refused, reset), 504
(no answer in time), 503 (the gateway's connection pool to it is exhausted).

The proxy is a WSGI application of its own, mounted in front of Flask (`mount`). It parses nothing it forwards,
so Flask's request and response objects would be pure cost (bench/README.md, "gateway: the proxy is a WSGI
application"). It keeps the gateway's conventions all the same: the request id, the access line, the JSON error
shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

import urllib3
from crud_common.bodies import read_body
from crud_common.errors import ApiError, BrokenStream, shorten, wsgi_error
from crud_common.logs import one_line
from crud_common.request_ids import request_id_from
from crud_common.serving import MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_LINE
from crud_common.webapp import log_access
from pydantic import SecretStr
from urllib3.exceptions import (
    ConnectTimeoutError, EmptyPoolError, HTTPError, MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError,
)

from .inventory_client import InventoryClient
from .keys import require_key
from .metrics import GatewayMetrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("gateway.access")

PREFIX = "/api/movies"
PROXIED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# RFC 9110 section 7.6.1 hop-by-hop headers, plus those the proxy sets itself: Host (the inventory's),
# Content-Length (of the body actually sent), and Server/Date (gunicorn writes its own).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade"}
)
# X-Front-Connection: the client's Connection header as the front passed it on (app/front.py).
_NOT_FORWARDED_REQUEST = HOP_BY_HOP | {"host", "content-length", "x-request-id", "x-front-connection"}
_NOT_RETURNED_RESPONSE = HOP_BY_HOP | {"x-request-id", "server", "date"}
# The size of the pieces in which an answer's body is relayed.
RELAY_CHUNK_BYTES = 64 * 1024

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

    def __init__(self, client: InventoryClient, max_body_bytes: int, metrics: GatewayMetrics,
                 api_keys: tuple[SecretStr, ...] = ()) -> None:
        self.client = client
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.api_keys = api_keys

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        method = environ["REQUEST_METHOD"]
        target = _target(environ)

        def logged(status: int) -> None:
            seconds = time.perf_counter() - started
            log_access(access_log, method, target, status, seconds, request_id, {"upstream": "inventory"})
            self.metrics.observe(route_of(environ.get("PATH_INFO", "")), method, status, seconds)

        try:
            upstream = self._forward(environ, method, target, request_id)
        except Exception as exc:  # noqa: BLE001 - the shared shape even for a bug; the log has its trace
            error = exc if isinstance(exc, ApiError) else _unexpected(method, target)
            status, headers, body = wsgi_error(error, request_id)
            if error.status == 405:
                headers.append(("Allow", _allowed_methods(environ.get("PATH_INFO", ""))))
            start_response(status, headers)
            logged(error.status)
            return [body]
        headers = _returned_headers(upstream, method)
        headers.append(("X-Request-ID", request_id))
        start_response(f"{upstream.status} {upstream.reason}".strip(), headers)
        return RelayedBody(upstream, method, lambda: logged(upstream.status),
                           on_cut_off=self.metrics.upstream_failures.labels("cut_off").inc)

    def _forward(
        self, environ: WSGIEnviron, method: str, target: str, request_id: str
    ) -> urllib3.BaseHTTPResponse:
        if method not in PROXIED_METHODS:
            raise ApiError(405, f"{shorten(method)} is not allowed on {shorten(environ.get('PATH_INFO', ''))}")
        require_key(method, environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION"), self.api_keys)
        body = read_body(environ, self.max_body_bytes) or None
        headers = _forwarded_headers(environ, request_id, self.client.host_header,
                                     keys_in_use=bool(self.api_keys))
        _check_upstream_limits(method, self.client.base_path + target, headers)
        failures = self.metrics.upstream_failures
        try:
            return self.client.request(method, target, headers, body)
        except EmptyPoolError:
            failures.labels("pool_exhausted").inc()
            raise ApiError(503, "the gateway has no free connection to the inventory, try again later") from None
        except ReadTimeoutError:
            failures.labels("timeout").inc()
            log.warning("inventory timeout: %s %s", method, target)
            raise ApiError(504, "the inventory did not answer in time") from None
        except MaxRetryError as exc:
            if isinstance(exc.reason, ReadTimeoutError):
                failures.labels("timeout").inc()
                raise ApiError(504, "the inventory did not answer in time") from None
            # A connection that never opened, or (an idempotent request tried again) the last try's failure.
            failures.labels("unreachable" if isinstance(exc.reason, ConnectTimeoutError) else "bad_answer").inc()
            log.warning("inventory unreachable: %s", one_line(exc))
            raise ApiError(502, "the inventory is unreachable") from None
        except (NewConnectionError, ProtocolError, HTTPError, OSError) as exc:
            failures.labels("bad_answer").inc()
            log.warning("inventory failed: %s", one_line(exc))
            raise ApiError(502, "the inventory closed the connection or answered garbage") from None


class RelayedBody:
    """The inventory's body, relayed to the client as it arrives: memory stays flat however long the answer (the
    whole list of movies is streamed). The upstream connection goes back to the pool once the body is read to
    its end, and is dropped if the client leaves before. If the inventory fails in the middle, the client's
    connection is cut too (BrokenStream): an answer that lost its end must never look complete."""

    def __init__(self, upstream: urllib3.BaseHTTPResponse, method: str, on_close: Callable[[], None], *,
                 on_cut_off: Callable[[], None] = lambda: None) -> None:
        self._upstream = upstream
        self._method = method
        self._on_close = on_close
        self._on_cut_off = on_cut_off
        self._complete = method == "HEAD"  # a HEAD answer has no body to relay

    def __iter__(self) -> Iterator[bytes]:
        if self._complete:
            return
        try:
            yield from self._upstream.stream(RELAY_CHUNK_BYTES, decode_content=False)
        except (HTTPError, OSError) as exc:
            log.warning("the inventory's answer was cut off: %s", one_line(exc))
            self._on_cut_off()
            raise BrokenStream("the inventory's answer was cut off") from None
        self._complete = True

    def close(self) -> None:
        if self._complete:
            self._upstream.drain_conn()  # nothing left to read: the connection goes back to the pool
        else:
            self._upstream.close()  # unread bytes left (the client left early): it cannot serve another request
        self._upstream.release_conn()
        self._on_close()


def route_of(path: str) -> str | None:
    """The route a proxied path is counted under: the inventory's own two patterns, else none (a path the
    inventory answers 404): a label per id would make a series per movie."""
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return None
    rest = path[len(PREFIX):]
    if rest in ("", "/"):
        return PREFIX
    movie_id = rest[1:].removesuffix("/")  # the inventory serves /api/movies/<id>/ too
    if movie_id and "/" not in movie_id:
        return PREFIX + "/<movie_id>"  # the inventory's own name of it
    return None


def _unexpected(method: str, target: str) -> ApiError:
    log.exception("unhandled error proxying %s %s", method, target)
    return ApiError(500, "internal error; see the gateway log for this request id")


def _allowed_methods(path: str) -> str:
    """What the inventory serves on this path (the Allow of its own 405s), for the gateway's 405 of a method it
    does not forward at all (TRACE, CONNECT, an unknown one)."""
    if path.rstrip("/") == PREFIX:
        return "GET, HEAD, POST, DELETE, OPTIONS"
    return "GET, HEAD, PUT, DELETE, OPTIONS"


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


def _forwarded_headers(environ: WSGIEnviron, request_id: str, host: str, *,
                       keys_in_use: bool) -> dict[str, str]:
    # The gateway's API key is for the gateway: it does not travel further (nor an Authorization that carried it).
    skip = _NOT_FORWARDED_REQUEST | {"x-api-key"} | ({"authorization"} if keys_in_use else set())
    skip |= _connection_tokens([environ.get("HTTP_CONNECTION", ""), environ.get("HTTP_X_FRONT_CONNECTION", "")])
    headers: dict[str, str] = {"Host": host}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
            if name.lower() not in skip:
                headers[name] = value
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    headers["X-Request-ID"] = request_id
    # Behind the front, the peer is a unix socket and the front has already added the client's address.
    client = environ.get("REMOTE_ADDR", "")
    previous = environ.get("HTTP_X_FORWARDED_FOR")
    headers["X-Forwarded-For"] = ", ".join(part for part in (previous, client) if part)
    return headers


def _check_upstream_limits(method: str, target: str, headers: dict[str, str]) -> None:
    """Refuse here, with this request's id, what the inventory's HTTP server would refuse: the request as
    forwarded (under the inventory URL's path, repeated headers joined into one line, X-Request-ID and
    X-Forwarded-For added) may exceed the limits the client's request met on the way in."""
    if len(f"{method} {target} HTTP/1.1") > MAX_REQUEST_LINE:
        raise ApiError(414, f"the request line is too long to forward to the inventory (at most "
                            f"{MAX_REQUEST_LINE} bytes)")
    # Host is in `headers`; http.client may add Accept-Encoding, User-Agent and Content-Length.
    forwardable = MAX_HEADER_FIELDS - 3
    if len(headers) > forwardable:
        raise ApiError(431, f"too many header fields to forward to the inventory: {len(headers)}, with Host, "
                            f"X-Request-ID and X-Forwarded-For, of at most {forwardable}")
    for name, value in headers.items():
        if len(name) + 2 + len(value) > MAX_HEADER_FIELD_BYTES:
            raise ApiError(431, f"header {shorten(name)} is too large to forward (at most "
                                f"{MAX_HEADER_FIELD_BYTES} bytes, repeated headers joined)")


def _returned_headers(upstream: urllib3.BaseHTTPResponse, method: str) -> list[tuple[str, str]]:
    """The inventory's headers minus the hop-by-hop ones; Content-Length stays, as the body is relayed byte for
    byte (when the inventory streams without one, so does the gateway: chunked)."""
    items = list(upstream.headers.iteritems())
    skip = _NOT_RETURNED_RESPONSE | _connection_tokens(value for name, value in items if name.lower() == "connection")
    return [(name, value) for name, value in items if name.lower() not in skip]
