"""Entry point: read the settings once, then consume billing_queue until SIGTERM or SIGINT.

PM2 runs this file with the service's venv python. A stop signal only raises a flag: the consumer finishes its
in-flight batch (or, if the database is down, hands it back to the broker) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys

from crud_common.logs import configure_logging
from crud_common.settings import load_or_exit

from app import create_service
from app.config import Config

log = logging.getLogger("billing")


def main() -> int:
    configure_logging()
    config = load_or_exit(Config, "billing")
    logging.getLogger().setLevel(config.billing.log_level)
    try:
        service = create_service(config)
    except OSError as exc:  # the status port is taken
        log.error("cannot open the status endpoint on %s:%d: %s", config.billing.status_host,
                  config.billing.status_port, exc)
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
