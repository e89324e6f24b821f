"""Swagger UI as a person uses it, in a real browser (Debian's Chromium, headless, driven by Playwright): the page
lists every operation of openapi.yaml, and "Try it out" on GET /api/movies shows the live answer."""

from __future__ import annotations

import json

import yaml
from playwright.sync_api import expect, sync_playwright

from .conftest import OUTPUT_DIR, REPO_ROOT

# As the machine's own probe runs it: as root, no sandbox; no background connections to a network that is closed.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def documented_operations() -> set[tuple[str, str]]:
    document = yaml.safe_load((REPO_ROOT / "openapi.yaml").read_text())
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}


def test_swagger_ui_lists_every_operation_and_tries_one_live(platform, capsys):
    created = platform_movie(platform)
    OUTPUT_DIR.mkdir(exist_ok=True)
    screenshot = OUTPUT_DIR / "swagger-ui.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{platform.gateway}/docs", wait_until="networkidle")
            blocks = page.locator(".opblock")
            expect(blocks.first).to_be_visible(timeout=30_000)
            listed = {(block.locator(".opblock-summary-method").inner_text().strip(),
                       block.locator(".opblock-summary-path").get_attribute("data-path"))
                      for block in blocks.all()}
            assert listed == documented_operations()

            operation = page.locator("#operations-movies-listMovies")
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.get_by_role("button", name="Execute").click()
            answer = operation.locator(".live-responses-table .response")
            expect(answer.locator(".response-col_status")).to_have_text("200", timeout=30_000)
            body = json.loads(answer.locator(".response-col_description .microlight").first.inner_text())
            assert created in body
            operation.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\n    Swagger UI screenshot: {screenshot}")


def platform_movie(platform) -> dict:
    import requests

    response = requests.post(f"{platform.gateway}/api/movies", json={"title": "Seen in Swagger UI"}, timeout=15)
    assert response.status_code == 200
    return response.json()
