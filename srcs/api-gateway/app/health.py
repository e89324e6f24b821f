"""The health of the gateway's two dependencies, each checked within a short, fixed time."""

from __future__ import annotations

import time
from typing import Any

from .inventory_client import InventoryClient
from .publisher import BrokerUnavailable, Publisher


def _timed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def inventory_check(client: InventoryClient) -> dict[str, Any]:
    started = time.perf_counter()
    healthy, detail = client.health()
    return {"status": "up" if healthy else "down", "detail": detail, "latency_ms": _timed(started)}


def rabbitmq_check(publisher: Publisher, queue: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        state = publisher.queue_state()
    except BrokerUnavailable as exc:
        return {"status": "down", "detail": str(exc), "latency_ms": _timed(started)}
    return {
        "status": "up",
        "detail": f"queue {queue}: {state.messages} messages, {state.consumers} consumers",
        "latency_ms": _timed(started),
        "queue": {"name": queue, "messages": state.messages, "consumers": state.consumers},
    }
