"""Entry point: read the settings once, then serve the gateway with gunicorn on GATEWAY_HOST:GATEWAY_PORT.

PM2 runs this file with the service's venv python; gunicorn runs inside this process (no shell wrapper), so
PM2's SIGTERM reaches gunicorn's master, which finishes in-flight requests before exiting.
"""

from __future__ import annotations

import logging
import socket

from crud_common.logs import configure_logging
from crud_common.serving import serve
from crud_common.settings import load_or_exit

from app import create_app
from app.config import Config

log = logging.getLogger("gateway")


def main() -> None:
    configure_logging()
    config = load_or_exit(Config, "gateway")
    rabbit = config.rabbitmq
    log.info("api gateway on %s (behind its front on %s:%s, host %s) -> inventory %s, rabbitmq %s:%s/%s queue %s",
             config.gateway.app_socket, config.gateway.host, config.gateway.port, socket.gethostname(),
             config.inventory.url, rabbit.host, rabbit.port, rabbit.vhost, rabbit.queue)
    if not config.gateway.api_keys:
        log.warning("no GATEWAY_API_KEYS: anyone who reaches the gateway may change movies and place orders "
                    "(README, Security)")
    # Behind the front (front.py: nginx), on a unix socket: nginx hands over whole requests only, one connection
    # each. Threads overlap the waits on the inventory and on broker confirms; each holds at most one pooled HTTP
    # connection, and hands its orders to the worker's one AMQP connection (app/publisher.py).
    config.gateway.runtime_dir.mkdir(parents=True, exist_ok=True)
    # The gateway's metrics endpoint shows the reads its front carried to the inventory too (front.py).
    serve(config.gateway, lambda: create_app(config), name="api_gateway", keepalive=5,
          bind=f"unix:{config.gateway.app_socket}", metrics=config.metrics, metrics_dir=config.gateway.metrics_dir)


if __name__ == "__main__":
    main()
