"""Settings, with pydantic-settings: read once, at a service's entry point, from the environment and `.env` (the
environment wins, so tests, the VMs and the bench point the same code elsewhere), validated, and refused with the
name of every bad variable.

A service's settings are a frozen dataclass of parts, each a BaseSettings class read under its own prefix
(`part("BILLING_DB_")`): the shared `DatabaseSettings` (as INVENTORY_DB_* or BILLING_DB_*) and `RabbitSettings`
(RABBITMQ_*), plus the service's own. `load` reads them all and reports every problem of every part at once.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import field, fields
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

log = logging.getLogger(__name__)

# srcs/common/crud_common/settings.py -> the repository (the library is installed editable, from the checkout).
REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_FILE_VARIABLE = "CRUD_MASTER_ENV_FILE"

Port = Annotated[int, Field(ge=1, le=65535)]
# Queue names end up in AMQP frames and logs: a plain token.
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]

Config = TypeVar("Config")
ListenerT = TypeVar("ListenerT", bound=BaseSettings)


class Settings(BaseSettings):
    """A part of a service's settings: frozen, and only its own fields (other variables are someone else's)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)


class HttpServerSettings(Settings):
    """Where an HTTP service listens, and how many gunicorn workers and threads serve it."""

    host: str
    port: Port
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    threads: Annotated[int, Field(ge=1, le=256)] = 8


class Pm2InstanceSettings(Settings):
    """NODE_APP_INSTANCE: which of a PM2 app's instances this process is (0, 1, ...: PM2 numbers them, and `pm2
    scale` adds more). An instance listens on its app's ports plus this number, so that the instances of one app
    (the two consumers of TOPOLOGY=ha) never collide."""

    instance: Annotated[int, Field(ge=0, le=99)] = 0

    def shift(self, listener: ListenerT, field: str = "port") -> ListenerT:
        """`listener` (settings with a port in `field`) as this instance has it: that port plus the instance
        number; a port of 0 (any free one) stays 0."""
        port = getattr(listener, field)
        return listener.model_copy(update={field: port + self.instance}) if self.instance and port else listener


class MetricsSettings(Settings):
    """Where an HTTP service serves its Prometheus metrics (GATEWAY_METRICS_*, INVENTORY_METRICS_*): an
    operator's address, loopback unless told otherwise, never the public port."""

    host: str = "127.0.0.1"
    port: Port


class DatabaseSettings(Settings):
    """A PostgreSQL database and the role that owns it (INVENTORY_DB_* or BILLING_DB_*)."""

    host: str
    port: Port
    name: str
    user: str
    password: SecretStr

    def url(self) -> Any:
        """The SQLAlchemy URL (the password in it, but never in its repr)."""
        from sqlalchemy.engine import URL

        return URL.create("postgresql+psycopg2", username=self.user, password=self.password.get_secret_value(),
                          host=self.host, port=self.port, database=self.name)

    def engine(self, *, application_name: str, connect_timeout_s: int, statement_timeout_ms: int,
               **options: Any) -> Any:
        """A SQLAlchemy engine whose every wait is bounded, so that a dead or slow database is a quick error,
        never a hung request: connecting, and each statement (PostgreSQL cancels it); `options` are the pool's."""
        from sqlalchemy import create_engine

        return create_engine(self.url(), connect_args={
            "connect_timeout": connect_timeout_s,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": application_name,
        }, **options)


# A broker node: a host name or IPv4 address, and a port of its own when it has one.
_BROKER_NODE = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)(?::(?P<port>[0-9]{1,5}))?")


class RabbitSettings(Settings):
    """The RabbitMQ broker, the vhost and user of the platform, and the billing queue (RABBITMQ_*).

    RABBITMQ_HOST names the broker's node, or every node of a cluster, comma-separated (`host` or `host:port`
    each; RABBITMQ_PORT where a node has no port of its own): a client connects to the first that answers, in
    an order of its own, and to the next one when it goes."""

    host: str
    port: Port
    vhost: str
    user: str
    password: SecretStr
    queue: QueueName

    @field_validator("host")
    @classmethod
    def _broker_nodes(cls, value: str) -> str:
        nodes = [node.strip() for node in value.split(",")]
        for node in nodes:
            match = _BROKER_NODE.fullmatch(node)
            if match is None or (match["port"] is not None and not 1 <= int(match["port"]) <= 65535):
                raise ValueError(f"{node!r} is not a host or host:port (nodes are comma-separated)")
        return ",".join(nodes)

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """(host, port) of every node, in the order RABBITMQ_HOST gives them."""
        pairs = (_BROKER_NODE.fullmatch(node) for node in self.host.split(","))
        return tuple((match["host"], int(match["port"] or self.port)) for match in pairs if match is not None)


class SettingsError(ValueError):
    """The environment does not describe a usable service; `problems` names every bad variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str], prefix: str) -> None:
        self._environ = environ
        super().__init__(settings_cls, env_prefix=prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def environment() -> dict[str, str]:
    """`.env` (or the file CRUD_MASTER_ENV_FILE names) under the process's own environment, which wins."""
    env_file = Path(os.environ.get(ENV_FILE_VARIABLE) or REPO_ROOT / ".env")
    from_file = {key: value for key, value in dotenv_values(env_file).items() if value is not None}
    return {**from_file, **os.environ}


def part(prefix: str, *, default: type[Settings] | None = None) -> Any:
    """A field of a service's Config dataclass: its settings class, read under `prefix` (a part with a `default`
    class may be left out when a Config is built by hand, as tests do)."""
    if default is not None:
        return field(default_factory=default, metadata={"prefix": prefix})
    return field(metadata={"prefix": prefix})


def load(config: type[Config], environ: Mapping[str, str] | None = None) -> Config:
    """The service's Config, each of its parts read from `environ` (default: `environment()`), its other fields
    left to their defaults; SettingsError naming every bad variable of every part."""
    types = get_type_hints(config)
    parts = {f.name: (types[f.name], f.metadata["prefix"]) for f in fields(config) if "prefix" in f.metadata}
    return config(**load_parts(parts, environ))


def load_parts(parts: Mapping[str, tuple[type[Settings], str]],
               environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each part, `name: (settings class, variable prefix)`, read from `environ` (default: `environment()`);
    SettingsError naming every bad variable of every part."""
    # Surrounding whitespace is never meant; a variable that is empty once stripped is not set (env_ignore_empty).
    environ = {key: value.strip() for key, value in (environment() if environ is None else environ).items()}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, (kind, prefix) in parts.items():
        try:
            values[name] = kind.model_validate(_MappingSource(kind, environ, prefix)())
        except ValidationError as exc:
            problems += [_problem(kind, prefix, error, environ) for error in exc.errors(include_url=False)]
    if problems:
        raise SettingsError(problems)
    return values


def _problem(kind: type[Settings], prefix: str, error: Any, environ: Mapping[str, str]) -> str:
    if not error["loc"]:  # a rule across fields: its message names the variables itself
        return error["msg"].removeprefix("Value error, ")
    field = str(error["loc"][0])
    variable = f"{prefix}{field.upper()}"
    if error["type"] == "missing":
        return f"{variable} is not set"
    annotation = kind.model_fields[field].annotation if field in kind.model_fields else None
    shown = "(hidden)" if _holds_a_secret(annotation) else repr(environ.get(variable, ""))
    return f"{variable}={shown}: {error['msg'].removeprefix('Value error, ')}"


def _holds_a_secret(annotation: Any) -> bool:
    """SecretStr itself, or a type made of it (a tuple of keys): its value is never echoed."""
    return annotation is SecretStr or any(_holds_a_secret(arg) for arg in get_args(annotation))


def load_or_exit(config: type[Config], service: str) -> Config:
    """`load`, for an entry point: bad settings are logged, one line per variable, and the process exits 2."""
    try:
        return load(config)
    except SettingsError as exc:
        for problem in exc.problems:
            log.error("invalid %s settings: %s", service, problem)
        logging.shutdown()
        sys.exit(2)
