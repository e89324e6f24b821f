"""The billing service: a RabbitMQ consumer that stores orders in orders_db, plus its operator endpoint."""

from __future__ import annotations

from .config import Config
from .consumer import BillingConsumer
from .db import database_reachable, make_engine
from .metrics import Metrics
from .status import StatusServer


class BillingService:
    """The consumer, its database engine and its status endpoint, wired from one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.engine = make_engine(config)
        self.consumer = BillingConsumer(config, self.engine, self.metrics)
        self.status = StatusServer(
            config.status_host,
            config.status_port,
            self.metrics,
            consumer_connected=lambda: self.consumer.connected,
            database_reachable=lambda: database_reachable(self.engine),
        )

    def run(self) -> None:
        """Serve until stop(); returns once the in-flight batch is stored or handed back to the broker."""
        self.status.start()
        try:
            self.consumer.run()
        finally:
            self.status.close()
            self.engine.dispose()

    def stop(self) -> None:
        self.consumer.stop()


def create_service(config: Config) -> BillingService:
    return BillingService(config)
