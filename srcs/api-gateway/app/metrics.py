"""The gateway's metrics: its requests (crud_common.metrics), what the inventory failed, and what became of each
order it published."""

from __future__ import annotations

from crud_common.metrics import HttpMetrics, counter_by

# What the inventory did wrong, as the gateway answered it: unreachable (502), no answer in time (504), no free
# pooled connection (503), garbage or a closed connection (502), an answer cut off in the middle.
UPSTREAM_FAILURES = ("unreachable", "timeout", "pool_exhausted", "bad_answer", "cut_off")
# What became of an order: confirmed by the broker (200), refused by it (a full queue: 503), or not published
# at all (broker down, blocked, unroutable, no confirm in time: 503).
PUBLISH_OUTCOMES = ("confirmed", "refused", "failed")


class GatewayMetrics(HttpMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.upstream_failures = counter_by(self.registry, "gateway_inventory_failures",
                                            "Requests the inventory failed, by kind.", "kind", UPSTREAM_FAILURES)
        self.publishes = counter_by(self.registry, "gateway_order_publishes",
                                    "Orders published to billing_queue, by outcome.", "outcome", PUBLISH_OUTCOMES)
