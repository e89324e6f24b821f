"""Entry point: read the settings once, then serve the gateway with gunicorn on GATEWAY_HOST:GATEWAY_PORT.

PM2 runs this file with the service's venv python; gunicorn runs inside this process (no shell wrapper), so
PM2's SIGTERM reaches gunicorn's master, which finishes in-flight requests before exiting.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from dotenv import load_dotenv
from flask import Flask
from gunicorn.app.base import BaseApplication

from app import create_app
from app.config import Config, ConfigError
from serving import REQUEST_LIMITS, DrainingThreadWorker, GunicornLogger, configure_logging

REPO_ROOT = Path(__file__).resolve().parents[2]
GRACEFUL_TIMEOUT_S = 20

log = logging.getLogger("gateway")


class GatewayServer(BaseApplication):
    """gunicorn's documented custom-application hook, fed from Config instead of a config file."""

    def __init__(self, config: Config) -> None:
        self.service_config = config
        super().__init__()

    def load_config(self) -> None:
        settings = {
            "bind": f"{self.service_config.host}:{self.service_config.port}",
            "workers": self.service_config.workers,
            # Threads overlap the waits on the inventory and on broker confirms; each thread keeps its own
            # AMQP connection and at most one pooled HTTP connection.
            "worker_class": DrainingThreadWorker,
            "threads": self.service_config.threads,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            # Above every bounded wait of a request (inventory read timeout, AMQP timeouts).
            "timeout": 30,
            "keepalive": 5,
            **REQUEST_LIMITS,
            "errorlog": "-",
            "logger_class": GunicornLogger,
            "loglevel": "info",
            "proc_name": "api_gateway",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Called in each worker after the fork: every worker gets its own HTTP pool and AMQP connections.
        return create_app(self.service_config)


def main() -> None:
    configure_logging()
    # pika logs every connection step, and an expected reconnect (an idle connection the broker dropped) as
    # ERROR with a traceback; the publisher logs each of those events itself, in one line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    load_dotenv(os.environ.get("CRUD_MASTER_ENV_FILE", REPO_ROOT / ".env"), override=False)
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    log.info("api gateway on %s:%s (host %s) -> inventory %s, rabbitmq %s:%s/%s queue %s",
             config.host, config.port, socket.gethostname(), config.inventory_url, config.rabbitmq.host,
             config.rabbitmq.port, config.rabbitmq.vhost, config.rabbitmq.queue)
    GatewayServer(config).run()


if __name__ == "__main__":
    main()
