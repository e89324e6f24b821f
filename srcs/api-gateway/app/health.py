"""GET /health: the gateway and the two things it needs, each checked within a short, fixed time."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from .proxy import InventoryClient
from .publisher import BrokerUnavailable, Publisher

bp = Blueprint("health", __name__)


def _inventory_check(client: InventoryClient) -> dict[str, Any]:
    started = time.perf_counter()
    healthy, detail = client.health()
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return {"status": "up" if healthy else "down", "detail": detail, "latency_ms": latency_ms}


def _rabbitmq_check(publisher: Publisher, queue: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        state = publisher.queue_state()
    except BrokerUnavailable as exc:
        return {
            "status": "down",
            "detail": str(exc),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    return {
        "status": "up",
        "detail": f"queue {queue}: {state.messages} messages, {state.consumers} consumers",
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "queue": {"name": queue, "messages": state.messages, "consumers": state.consumers},
    }


@bp.get("/health")
def health() -> tuple[Response, int]:
    config = current_app.extensions["gateway_config"]
    dependencies = {
        "inventory": _inventory_check(current_app.extensions["inventory_client"]),
        "rabbitmq": _rabbitmq_check(current_app.extensions["publisher"], config.rabbitmq.queue),
    }
    down = sorted(name for name, check in dependencies.items() if check["status"] != "up")
    body: dict[str, Any] = {"status": "degraded" if down else "ok", "dependencies": dependencies}
    if down:
        # A 503 is an error like any other: the shared shape, plus what each dependency answered.
        body.update(error="service_unavailable", message="down: " + ", ".join(down), down=down)
    body["request_id"] = g.request_id
    return jsonify(body), 503 if down else 200
