"""Entry point: read the settings once, then consume billing_queue until SIGTERM or SIGINT.

PM2 runs this file with the service's venv python. A stop signal only raises a flag: the consumer finishes its
in-flight batch (or, if the database is down, hands it back to the broker unacked) and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from dotenv import load_dotenv

from app import create_service
from app.config import Config, ConfigError
from app.logs import configure_logging

REPO_ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger("billing")


def main() -> int:
    configure_logging(os.environ.get("BILLING_LOG_LEVEL", "INFO").upper())
    # pika logs every failed reconnect attempt with a traceback; the consumer logs one line per failure itself.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    load_dotenv(REPO_ROOT / ".env", override=False)
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        service = create_service(config)
    except OSError as exc:  # the status port is taken
        log.error("cannot open the status endpoint on %s:%d: %s", config.status_host, config.status_port, exc)
        return 1

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the in-flight batch", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
