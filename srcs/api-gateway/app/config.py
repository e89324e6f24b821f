"""Settings of the API gateway, read once at its entry point: where it listens and its bounded waits (GATEWAY_*),
where its metrics are served (GATEWAY_METRICS_*), the inventory it proxies to (INVENTORY_URL) and the broker it publishes to (RABBITMQ_*), validated by
pydantic-settings (crud_common.settings names every bad variable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from crud_common.settings import HttpServerSettings, MetricsSettings, Pm2InstanceSettings, RabbitSettings, Settings, part
from pydantic import AfterValidator, Field, FilePath, SecretStr, field_validator
from pydantic_settings import NoDecode

# openapi.yaml lives at the repository root: srcs/api-gateway/app/config.py -> parents[3].
DEFAULT_OPENAPI_FILE = Path(__file__).resolve().parents[3] / "openapi.yaml"


def _http_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an http(s)://host[:port][/path] URL")
    return url.rstrip("/")


class GatewaySettings(HttpServerSettings):
    """GATEWAY_*: where the gateway listens (its front, nginx, on host:port; the application, gunicorn, on a unix
    socket behind it), what it lets in, and every bound on what it waits for."""

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
    # The front: a client must send its whole request header within this, and never pause longer than this
    # while sending a body; a slow client costs nginx a connection slot, never a gateway thread.
    client_header_timeout_s: Annotated[int, Field(ge=1, le=300)] = 10
    client_body_timeout_s: Annotated[int, Field(ge=1, le=300)] = 10
    max_connections_per_client: Annotated[int, Field(ge=1, le=100_000)] = 64
    # Requests per second per client address, and the burst above that rate it may send at once (a token bucket
    # shared by every nginx worker); far above what the audit or the Postman collection send.
    rate_limit_per_s: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    rate_limit_burst: Annotated[int, Field(ge=0, le=1_000_000)] = 1000
    # Behind a load balancer (TOPOLOGY=ha: HAProxy) that opens each connection with the PROXY protocol header: the
    # client's address is taken from it, so the per-client limits count clients, not the balancer.
    behind_proxy_protocol: bool = False
    # Where the application's unix socket and the front's runtime files live (one pair per GATEWAY_PORT).
    runtime_dir: Path = Path("/run/crud-master")
    # Keys a request that changes state (POST, PUT, DELETE) must carry, comma-separated; none: no key needed.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()

    @field_validator("api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            keys = tuple(key.strip() for key in value.split(",") if key.strip())
            if any(len(key) < 16 for key in keys):
                raise ValueError("each key must be at least 16 characters")
            return keys
        return value

    @property
    def app_socket(self) -> Path:
        """The unix socket gunicorn listens on and the front proxies to."""
        return self.runtime_dir / f"gateway-{self.port}.sock"

    @property
    def metrics_dir(self) -> Path:
        """Where the values of the gateway's metrics live: its workers' and its front's (the reads it carried),
        added up by its gunicorn master (crud_common.serving, metrics_dir)."""
        return self.runtime_dir / f"gateway-{self.port}-metrics"


class InventorySettings(Settings):
    """INVENTORY_URL: the inventory behind /api/movies."""

    url: Annotated[str, AfterValidator(_http_base_url)]


@dataclass(frozen=True)
class Config:
    gateway: GatewaySettings = part("GATEWAY_")
    metrics: MetricsSettings = part("GATEWAY_METRICS_")
    inventory: InventorySettings = part("INVENTORY_")
    rabbitmq: RabbitSettings = part("RABBITMQ_")
    pm2: Pm2InstanceSettings = part("NODE_APP_", default=Pm2InstanceSettings)

    def __post_init__(self) -> None:
        # Instance n of the gateway under PM2 (TOPOLOGY=ha runs two behind HAProxy) listens on each of its ports
        # plus n: its front and its application agree on both, and so on their socket (app_socket).
        object.__setattr__(self, "gateway", self.pm2.shift(self.gateway))
        object.__setattr__(self, "metrics", self.pm2.shift(self.metrics))
