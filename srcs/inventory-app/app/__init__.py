"""The inventory service: movies in PostgreSQL behind a small JSON API."""

from __future__ import annotations

from crud_common.webapp import init_request_logging, register_error_handlers
from flask import Flask

from .config import Config
from .db import Database
from .errors import DATABASE_ERRORS
from .metrics import InventoryMetrics
from .routes import bp


def create_app(config: Config) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    # Keep non-ASCII titles readable and the key order of the movie object as written.
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    # `//api/movies` is a 404 like any unknown path, not a redirect (Werkzeug's default answers it with an HTML
    # 308 whose Location is built from the request's own Host).
    app.url_map.merge_slashes = False
    app.extensions["inventory_config"] = config
    Database(config).init_app(app)
    metrics = InventoryMetrics()
    app.extensions["metrics"] = metrics
    init_request_logging(app, "inventory.access", metrics)
    register_error_handlers(app, DATABASE_ERRORS)
    app.register_blueprint(bp)
    return app
