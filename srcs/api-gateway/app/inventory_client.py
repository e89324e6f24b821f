"""The gateway's client of the inventory: one keep-alive connection pool per process, bounded waits, and retries
only where the inventory cannot act twice."""

from __future__ import annotations

from urllib.parse import urlsplit

import urllib3
from crud_common.logs import one_line
from urllib3.exceptions import HTTPError, ReadTimeoutError

from .config import Config

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class _RetryUnlessTimedOut(urllib3.Retry):
    """urllib3's Retry, except that a read timeout is never retried: it would send the request to a slow
    inventory twice and make the client wait twice as long."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):  # noqa: ANN001, ANN201 - urllib3's signature
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


class InventoryClient:
    """urllib3 pools are thread-safe; this one is sized for every thread of the worker."""

    def __init__(self, config: Config) -> None:
        parts = urlsplit(config.inventory.url)
        self.base_path = parts.path.rstrip("/")
        self.host_header = parts.netloc
        gateway = config.gateway
        self.timeout = urllib3.Timeout(connect=gateway.inventory_connect_timeout_s,
                                       read=gateway.inventory_read_timeout_s)
        self.health_timeout = urllib3.Timeout(connect=gateway.health_timeout_s, read=gateway.health_timeout_s)
        # A thread holds at most one connection, so with maxsize == threads and block=True a thread waits for a
        # connection only when something is badly wrong; that wait is bounded by pool_timeout.
        self.pool_timeout = gateway.inventory_connect_timeout_s
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=gateway.threads, block=True).connection_from_url(
            config.inventory.url
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
            return False, one_line(exc)
        if response.status != 200:
            return False, f"GET /health answered {response.status}"
        return True, "GET /health answered 200"
