"""The gateway's own HTTP routes (the proxied /api/movies... never reach Flask: app/proxy.py). Thin: read and
validate, call the domain, shape the answer."""

from __future__ import annotations

from typing import Any

from crud_common.bodies import exact_decimal
from crud_common.errors import ApiError
from crud_common.webapp import error_response, json_body, note
from flask import Blueprint, Response, current_app, g, jsonify, request, send_from_directory
from werkzeug.exceptions import NotFound

from . import docs, health as checks
from .orders import place_order
from .schemas import OrderRequest, idempotency_key

bp = Blueprint("gateway", __name__)


@bp.post("/api/billing")
@bp.post("/api/billing/")
def post_order() -> Response:
    # JSON numbers as Decimal: an amount of 0.1 stays exactly 0.1.
    order = OrderRequest.model_validate(json_body(parse_float=exact_decimal))
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    note("upstream", "rabbitmq")
    order_id = place_order(current_app.extensions["publisher"], order, key, g.request_id,
                           current_app.extensions["metrics"])
    return jsonify({"message": "Message posted", "message_id": order_id, "request_id": g.request_id})


@bp.get("/health")
def health() -> Response:
    queue = current_app.extensions["gateway_config"].rabbitmq.queue
    dependencies = {
        "inventory": checks.inventory_check(current_app.extensions["inventory_client"]),
        "rabbitmq": checks.rabbitmq_check(current_app.extensions["publisher"], queue),
    }
    down = sorted(name for name, check in dependencies.items() if check["status"] != "up")
    body: dict[str, Any] = {"status": "degraded" if down else "ok", "dependencies": dependencies}
    if down:
        # A 503 is an error like any other: the shared shape, plus what each dependency answered.
        return error_response(ApiError(503, "down: " + ", ".join(down)), **body, down=down)
    return jsonify({**body, "request_id": g.request_id})


@bp.get("/openapi.yaml")
def openapi_document() -> Response:
    path = current_app.extensions["gateway_config"].gateway.openapi_file
    return send_from_directory(path.parent, path.name, mimetype="application/yaml", max_age=60)


@bp.get("/docs")
@bp.get("/docs/")
def ui_page() -> Response:
    return Response(docs.PAGE, mimetype="text/html")


@bp.get("/docs/swagger-initializer.js")
def ui_initializer() -> Response:
    return Response(docs.INITIALIZER, mimetype="text/javascript")


@bp.get("/docs/<name>")
def ui_asset(name: str) -> Response:
    if name not in docs.UI_ASSETS:
        raise NotFound()
    return send_from_directory(docs.ASSETS_DIR, name, max_age=3600)
