"""The API's description: GET /openapi.yaml, and Swagger UI at GET /docs from the files of the
swagger-ui-bundle package (nothing loaded from a CDN)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, send_from_directory
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

bp = Blueprint("docs", __name__)

UI_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)

# Absolute asset URLs: the page works at /docs and /docs/ alike.
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>crud-master API gateway</title>
  <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script src="/docs/swagger-initializer.js" charset="UTF-8"></script>
</body>
</html>
"""

_INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
"""


@bp.get("/openapi.yaml")
def openapi_document() -> Response:
    path: Path = current_app.extensions["gateway_config"].openapi_file
    return send_from_directory(path.parent, path.name, mimetype="application/yaml", max_age=60)


@bp.get("/docs")
@bp.get("/docs/")
def ui_page() -> Response:
    return Response(_PAGE, mimetype="text/html")


@bp.get("/docs/swagger-initializer.js")
def ui_initializer() -> Response:
    return Response(_INITIALIZER, mimetype="text/javascript")


@bp.get("/docs/<name>")
def ui_asset(name: str) -> Response:
    if name not in UI_ASSETS:
        raise NotFound()
    return send_from_directory(Path(str(swagger_ui_path)), name, max_age=3600)
