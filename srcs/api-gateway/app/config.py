"""Settings of the API gateway, read once from the environment and validated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# openapi.yaml lives at the repository root: srcs/api-gateway/app/config.py -> parents[3].
DEFAULT_OPENAPI_FILE = Path(__file__).resolve().parents[3] / "openapi.yaml"

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


class ConfigError(ValueError):
    """The environment does not describe a usable gateway; the message names every problem."""


@dataclass(frozen=True)
class RabbitConfig:
    host: str
    port: int
    vhost: str
    user: str
    password: str = field(repr=False)
    queue: str
    # Every AMQP wait (TCP connect, handshake, unacknowledged bytes, a blocked connection) ends
    # within this, so a publish turns into a 503 instead of a hung request.
    timeout_s: float = 5.0
    heartbeat_s: int = 30


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    inventory_url: str
    rabbitmq: RabbitConfig
    workers: int = 2
    threads: int = 8
    inventory_connect_timeout_s: float = 2.0
    inventory_read_timeout_s: float = 10.0
    # /health must answer fast even when the inventory hangs.
    health_timeout_s: float = 2.0
    max_body_bytes: int = 64 * 1024
    openapi_file: Path = DEFAULT_OPENAPI_FILE

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

        def seconds(name: str, default: float, low: float, high: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not low <= value <= high:  # also rejects nan
                problems.append(f"{name}={raw!r} is not a number of seconds in [{low}, {high}]")
                return default
            return value

        host = required("GATEWAY_HOST")
        port = integer("GATEWAY_PORT", None, 1, 65535)
        inventory_url = required("INVENTORY_URL").rstrip("/")
        if inventory_url:
            parts = urlsplit(inventory_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                problems.append(f"INVENTORY_URL={inventory_url!r} is not an http(s)://host[:port] URL")
        queue = required("RABBITMQ_QUEUE")
        if queue and not _QUEUE_NAME.fullmatch(queue):
            problems.append(f"RABBITMQ_QUEUE={queue!r} is not a plain queue name")
        rabbitmq = RabbitConfig(
            host=required("RABBITMQ_HOST"),
            port=integer("RABBITMQ_PORT", None, 1, 65535),
            vhost=required("RABBITMQ_VHOST"),
            user=required("RABBITMQ_USER"),
            password=required("RABBITMQ_PASSWORD"),
            queue=queue,
            timeout_s=seconds("GATEWAY_AMQP_TIMEOUT_S", RabbitConfig.timeout_s, 0.1, 60),
        )
        workers = integer("GATEWAY_WORKERS", cls.workers, 1, 64)
        threads = integer("GATEWAY_THREADS", cls.threads, 1, 256)
        connect_timeout = seconds("GATEWAY_INVENTORY_CONNECT_TIMEOUT_S", cls.inventory_connect_timeout_s, 0.05, 60)
        read_timeout = seconds("GATEWAY_INVENTORY_READ_TIMEOUT_S", cls.inventory_read_timeout_s, 0.05, 300)
        openapi_file = Path(env.get("GATEWAY_OPENAPI_FILE", "").strip() or DEFAULT_OPENAPI_FILE)
        if not openapi_file.is_file():
            problems.append(f"the OpenAPI description {openapi_file} does not exist (GATEWAY_OPENAPI_FILE)")
        if problems:
            raise ConfigError("invalid gateway settings: " + "; ".join(problems))
        return cls(
            host=host,
            port=port,
            inventory_url=inventory_url,
            rabbitmq=rabbitmq,
            workers=workers,
            threads=threads,
            inventory_connect_timeout_s=connect_timeout,
            inventory_read_timeout_s=read_timeout,
            openapi_file=openapi_file,
        )
