"""The billing service: a RabbitMQ consumer that stores orders in orders_db, plus its operator endpoint."""

from __future__ import annotations

from .config import Config
from .consumer import ReconnectingConsumer
from .db import make_engine
from .metrics import Metrics
from .status import StatusServer
from .store import OrderStore


class BillingService:
    """The consumer, its store and its status endpoint, wired from one Config (the factory's output)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.engine = make_engine(config)
        self.store = OrderStore(self.engine)
        self.consumer = ReconnectingConsumer(config, self.store, self.metrics)
        self.status = StatusServer(
            config.billing.status_host,
            config.billing.status_port,
            self.metrics,
            consumer_connected=lambda: self.consumer.connected,
            database_reachable=self.store.reachable,
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
    """The factory, as create_app is for the HTTP services: everything built from `config`, nothing started."""
    return BillingService(config)
