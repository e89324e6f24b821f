"""Settings of the inventory service, read once from the environment and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import URL


class ConfigError(ValueError):
    """The environment does not describe a usable service; the message names every problem."""


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    database_url: URL
    workers: int = 2
    threads: int = 8
    # Bounded waits so that a dead or slow database turns into a quick 503, never a hung request.
    db_connect_timeout_s: int = 3
    db_statement_timeout_ms: int = 5000
    db_pool_timeout_s: int = 5
    max_body_bytes: int = 64 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        problems: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set")
            return value

        def integer(name: str, default: int | None, low: int, high: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                if default is None:
                    problems.append(f"{name} is not set")
                    return low
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                problems.append(f"{name}={raw!r} is not an integer in [{low}, {high}]")
                return low
            return int(raw)

        host = required("INVENTORY_HOST")
        port = integer("INVENTORY_PORT", None, 1, 65535)
        database_url = URL.create(
            "postgresql+psycopg2",
            username=required("INVENTORY_DB_USER"),
            password=required("INVENTORY_DB_PASSWORD"),
            host=required("INVENTORY_DB_HOST"),
            port=integer("INVENTORY_DB_PORT", None, 1, 65535),
            database=required("INVENTORY_DB_NAME"),
        )
        workers = integer("INVENTORY_WORKERS", cls.workers, 1, 64)
        threads = integer("INVENTORY_THREADS", cls.threads, 1, 256)
        if problems:
            raise ConfigError("invalid inventory settings: " + "; ".join(problems))
        return cls(host=host, port=port, database_url=database_url, workers=workers, threads=threads)
