"""The API gateway: one public entry point that proxies /api/movies to the inventory and publishes
/api/billing orders to RabbitMQ with broker confirms."""

from __future__ import annotations

from crud_common.webapp import init_request_logging, refuse_query_parameters, register_error_handlers
from flask import Flask, request

from .config import Config
from .inventory_client import InventoryClient
from .keys import require_key
from .metrics import GatewayMetrics
from .proxy import InventoryProxy, mount
from .publisher import Publisher
from .routes import bp


def create_app(config: Config) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.gateway.max_body_bytes
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    # `//api/movies` is a 404 like any unknown path, not a redirect (Werkzeug's default answers it with an HTML
    # 308 whose Location is built from the request's own Host).
    app.url_map.merge_slashes = False
    app.extensions["gateway_config"] = config
    # Created here, i.e. in each gunicorn worker after the fork: the HTTP pool is per process, and so is the
    # publisher's AMQP connection, opened on first use in an I/O thread of its own.
    inventory = InventoryClient(config)
    app.extensions["inventory_client"] = inventory
    app.extensions["publisher"] = Publisher(config.rabbitmq, timeout_s=config.gateway.amqp_timeout_s,
                                            heartbeat_s=config.gateway.amqp_heartbeat_s)
    metrics = GatewayMetrics()
    app.extensions["metrics"] = metrics
    init_request_logging(app, "gateway.access", metrics, upstream="-")
    register_error_handlers(app)
    keys = config.gateway.api_keys

    @app.before_request
    def _keys_then_no_query() -> None:
        if request.routing_exception is not None:
            return  # an unknown path or method: its 404 or 405 comes first
        require_key(request.method, request.headers.get("X-API-Key"), request.headers.get("Authorization"), keys)
        # The gateway's own routes (billing, health, docs) take no query parameter.
        refuse_query_parameters()

    app.register_blueprint(bp)
    # /api/movies... bypasses Flask: a WSGI proxy of its own in front of it (app/proxy.py says why).
    proxy = InventoryProxy(inventory, config.gateway.max_body_bytes, metrics, keys)
    app.wsgi_app = mount(proxy, app.wsgi_app)  # type: ignore[method-assign]
    return app
