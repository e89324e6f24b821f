"""Settings of the API gateway, read once at its entry point: where it listens and its bounded waits (GATEWAY_*),
the inventory it proxies to (INVENTORY_URL) and the broker it publishes to (RABBITMQ_*), validated by
pydantic-settings (crud_common.settings names every bad variable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from crud_common.settings import HttpServerSettings, RabbitSettings, Settings, part
from pydantic import AfterValidator, Field, FilePath

# openapi.yaml lives at the repository root: srcs/api-gateway/app/config.py -> parents[3].
DEFAULT_OPENAPI_FILE = Path(__file__).resolve().parents[3] / "openapi.yaml"


def _http_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an http(s)://host[:port][/path] URL")
    return url.rstrip("/")


class GatewaySettings(HttpServerSettings):
    """GATEWAY_*: where the gateway listens, and every bound on what it waits for."""

    inventory_connect_timeout_s: Annotated[float, Field(ge=0.05, le=60)] = 2.0
    inventory_read_timeout_s: Annotated[float, Field(ge=0.05, le=300)] = 10.0
    # /health must answer fast even when the inventory hangs.
    health_timeout_s: Annotated[float, Field(ge=0.05, le=60)] = 2.0
    # Every AMQP wait (TCP connect, handshake, unacknowledged bytes, a blocked connection) ends within this, so a
    # publish turns into a 503 instead of a hung request.
    amqp_timeout_s: Annotated[float, Field(ge=0.1, le=60)] = 5.0
    amqp_heartbeat_s: Annotated[int, Field(ge=0, le=600)] = 30
    max_body_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    openapi_file: FilePath = DEFAULT_OPENAPI_FILE


class InventorySettings(Settings):
    """INVENTORY_URL: the inventory behind /api/movies."""

    url: Annotated[str, AfterValidator(_http_base_url)]


@dataclass(frozen=True)
class Config:
    gateway: GatewaySettings = part("GATEWAY_")
    inventory: InventorySettings = part("INVENTORY_")
    rabbitmq: RabbitSettings = part("RABBITMQ_")
