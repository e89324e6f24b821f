"""The consumer's counters, in a registry of its own (one per consumer, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stored = Counter(
            "billing_orders_stored", "Orders written to orders_db.", registry=self.registry
        )
        self.duplicates = Counter(
            "billing_duplicates_skipped",
            "Messages whose message_id was already stored (redeliveries), acked without a new row.",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "billing_dead_lettered", "Invalid messages rejected to the dead-letter queue.", registry=self.registry
        )
        self.batches = Counter("billing_batches", "Batches committed and acked.", registry=self.registry)
        self.db_retries = Counter(
            "billing_database_retries", "Batch commits retried because the database failed.", registry=self.registry
        )
        self.parked = Counter(
            "billing_messages_parked",
            "Messages handed back to the queue as confirmed copies during a database outage.",
            registry=self.registry,
        )
        self.reconnects = Counter(
            "billing_broker_connections", "Connections opened to RabbitMQ.", registry=self.registry
        )
        self.connected = Gauge(
            "billing_consumer_connected", "1 while connected to RabbitMQ (consuming, or paused for the database).",
            registry=self.registry,
        )
