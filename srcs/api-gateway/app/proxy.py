"""Reverse proxy to the inventory: /api/movies and everything below it, every method.

The request goes on as the client sent it (method, raw path, query string, body, end-to-end headers) and the
inventory's answer comes back unmodified; the gateway only sets X-Request-ID. Failures of the inventory itself
become the gateway's own JSON errors: 502 (unreachable, refused, reset), 504 (no answer in time), 503 (the
gateway's connection pool to it is exhausted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import urllib3
from flask import Blueprint, Response, current_app, g, request
from urllib3.exceptions import (
    EmptyPoolError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from werkzeug.exceptions import RequestEntityTooLarge

from .config import Config
from .errors import ApiError
from .observability import mark_upstream

log = logging.getLogger(__name__)

bp = Blueprint("proxy", __name__)

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

    def _retries(self, method: str) -> urllib3.Retry:
        # Retried only when the inventory cannot have acted on the request twice: any method whose connect was
        # refused (it never arrived), and an idempotent method whose connection was reset or closed (typically
        # a pooled connection the inventory closed as it restarted). A POST that may have arrived is never sent
        # again, and nothing is retried after a read timeout (the inventory has it and is slow).
        if method in IDEMPOTENT_METHODS:
            return _RetryUnlessTimedOut(
                total=3, connect=2, read=1, status=0, other=0, redirect=False, raise_on_status=False,
                backoff_factor=0.05,
            )
        return _RetryUnlessTimedOut(
            total=2, connect=2, read=0, status=0, other=0, redirect=False, raise_on_status=False,
            backoff_factor=0.05,
        )

    def request(
        self, method: str, path_and_query: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        response = self._pool.urlopen(
            method,
            self.base_path + path_and_query,
            body=body,
            headers=headers,
            retries=self._retries(method),
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


def _target() -> str:
    """The path and query as the client wrote them: decoding and re-encoding could change them (%2F would
    become /). Bytes outside printable ASCII, which a client should have escaped, are %-escaped as they are,
    so the inventory decodes the very bytes the client sent."""
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    raw_path = raw_uri.split("?", 1)[0]
    path = raw_path.encode("latin-1") if raw_path.startswith("/") else quote(request.path).encode()
    target = quote(path, safe=_PRINTABLE_ASCII)
    if request.query_string:
        target += "?" + quote(request.query_string, safe=_PRINTABLE_ASCII)
    return target


# Everything a request target may hold as it is, '%' included (escapes already there stay as they are).
_PRINTABLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


def _request_body() -> bytes | None:
    raw = request.get_data(cache=False)  # raises 413 when Content-Length is over MAX_CONTENT_LENGTH
    # A chunked body has no Content-Length: Werkzeug stops reading at the limit without complaint,
    # so a full-sized read is probed for one byte more.
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and len(raw) >= limit and request.stream.read(1):
        raise RequestEntityTooLarge()
    return raw or None


def _connection_tokens(values: list[str]) -> set[str]:
    """Header names a Connection header declares hop-by-hop for this one connection."""
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


def _forwarded_headers() -> dict[str, str]:
    skip = _NOT_FORWARDED_REQUEST | _connection_tokens(request.headers.getlist("Connection"))
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower() in skip:
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    headers["X-Request-ID"] = g.request_id
    client = request.remote_addr or ""
    previous = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
    return headers


def _client_response(upstream: UpstreamResponse) -> Response:
    skip = _NOT_RETURNED_RESPONSE | _connection_tokens(
        [value for name, value in upstream.headers if name.lower() == "connection"]
    )
    headers = [(name, value) for name, value in upstream.headers if name.lower() not in skip]
    response = Response(upstream.body, status=f"{upstream.status} {upstream.reason}".strip(), headers=headers)
    if not any(name.lower() == "content-type" for name, _ in headers):
        # Werkzeug would add text/plain; an answer without a type (a 204) must stay without one.
        del response.headers["Content-Type"]
    if request.method == "HEAD":
        # No body to measure: keep the length the inventory announced for the GET.
        length = next((value for name, value in upstream.headers if name.lower() == "content-length"), None)
        if length is not None:
            response.headers["Content-Length"] = length
    return response


@bp.route("/api/movies", methods=PROXIED_METHODS, provide_automatic_options=False)
@bp.route("/api/movies/", methods=PROXIED_METHODS, provide_automatic_options=False)
@bp.route("/api/movies/<path:rest>", methods=PROXIED_METHODS, provide_automatic_options=False)
def forward(rest: str = "") -> Response:
    mark_upstream("inventory")
    client: InventoryClient = current_app.extensions["inventory_client"]
    target = _target()
    body = _request_body()
    try:
        upstream = client.request(request.method, target, _forwarded_headers(), body)
    except EmptyPoolError:
        raise ApiError(503, "the gateway has no free connection to the inventory, try again later") from None
    except ReadTimeoutError:
        log.warning("inventory timeout: %s %s", request.method, target)
        raise ApiError(504, "the inventory did not answer in time") from None
    except MaxRetryError as exc:
        if isinstance(exc.reason, ReadTimeoutError):
            raise ApiError(504, "the inventory did not answer in time") from None
        log.warning("inventory unreachable: %s", _describe(exc))
        raise ApiError(502, "the inventory is unreachable") from None
    except (NewConnectionError, ProtocolError, HTTPError, OSError) as exc:
        log.warning("inventory failed: %s", _describe(exc))
        raise ApiError(502, "the inventory closed the connection or answered garbage") from None
    return _client_response(upstream)
