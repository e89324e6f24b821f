"""The API gateway: one public entry point that proxies /api/movies to the inventory and publishes
/api/billing orders to RabbitMQ with broker confirms."""

from __future__ import annotations

from flask import Flask

from . import billing, docs, health
from .config import Config
from .errors import refuse_query_parameters, register_error_handlers
from .observability import init_request_logging
from .proxy import InventoryClient, InventoryProxy, mount
from .publisher import Publisher


def create_app(config: Config) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    # `//api/movies` is a 404 like any unknown path, not a redirect (Werkzeug's default answers it with an HTML
    # 308 whose Location is built from the request's own Host).
    app.url_map.merge_slashes = False
    app.extensions["gateway_config"] = config
    # Created here, i.e. in each gunicorn worker after the fork: the HTTP pool is per process, and the
    # publisher opens its AMQP connections lazily, per thread.
    inventory = InventoryClient(config)
    app.extensions["inventory_client"] = inventory
    app.extensions["publisher"] = Publisher(config.rabbitmq)
    init_request_logging(app)
    register_error_handlers(app)
    app.before_request(refuse_query_parameters)
    for blueprint in (billing.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    # /api/movies... bypasses Flask: a WSGI proxy of its own in front of it (app/proxy.py says why).
    app.wsgi_app = mount(InventoryProxy(inventory, config.max_body_bytes), app.wsgi_app)  # type: ignore[method-assign]
    return app
