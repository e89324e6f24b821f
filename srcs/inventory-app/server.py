"""Entry point: read the settings once, then serve the inventory with gunicorn on INVENTORY_HOST:INVENTORY_PORT.

PM2 runs this file with the service's venv python; gunicorn runs inside this process (no shell wrapper), so
PM2's SIGTERM reaches gunicorn's master, which finishes in-flight requests before exiting.
"""

from __future__ import annotations

from crud_common.logs import configure_logging
from crud_common.serving import serve
from crud_common.settings import load_or_exit

from app import create_app
from app.config import Config


def main() -> None:
    configure_logging()
    config = load_or_exit(Config, "inventory")
    # Threads keep the gateway's pooled connections alive (keepalive above its idle time) and overlap database
    # waits; each worker builds its own engine after the fork.
    serve(config.server, lambda: create_app(config), name="inventory_app", keepalive=75,
          metrics=config.metrics)


if __name__ == "__main__":
    main()
