"""GET /openapi.yaml serves the description; GET /docs serves Swagger UI from the packaged files."""

from __future__ import annotations

import re

import yaml
from openapi_spec_validator import validate


def test_openapi_document_is_served_and_parses(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    document = yaml.safe_load(response.data)
    validate(document)
    assert document["openapi"].startswith("3.")


def test_docs_page_and_every_asset_it_loads(client):
    for path in ("/docs", "/docs/"):
        page = client.get(path)
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert b'id="swagger-ui"' in page.data
    assets = re.findall(r'(?:src|href)="(/docs/[^"]+)"', page.get_data(as_text=True))
    assert "/docs/swagger-ui-bundle.js" in assets and "/docs/swagger-ui.css" in assets
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.mimetype == expected_types[asset[asset.rindex("."):]], asset
        assert len(response.data) > 0
    assert b'"/openapi.yaml"' in client.get("/docs/swagger-initializer.js").data
    # Nothing comes from elsewhere: no CDN.
    assert b"http" not in page.data


def test_only_the_ui_files_are_served(client):
    for path in ("/docs/index.j2", "/docs/..%2F__init__.py", "/docs/nope.js"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["error"] == "not_found"
