"""The API page (/docs, Swagger UI served from the binary) in a real headless Chromium: it loads,
lists the routes of /openapi.json, and "Try it out" on POST /predict gets the sample's answer.
The screenshot is kept in .cache/docs-page.png, a test artifact."""

import json
import os
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/clients"))
from conftest import Server, read_bundle  # noqa: E402  (the client tests' fixtures, reused)

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("PREDICTOR_REQUIRE_BROWSER") == "1":
        raise RuntimeError("Chromium is missing: run scripts/browser")
    pytest.skip("Chromium is missing (scripts/browser installs it)", allow_module_level=True)

# As the machine's notes advise: no background networking in a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server():
    server = Server([REPO / "models/iris-svc"])
    yield server
    server.stop()


def test_the_api_page_lists_the_routes_and_tries_predict(server):
    bundle = read_bundle(REPO / "models/iris-svc")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 2400})
        page.goto(f"http://{server.http}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        listed = {path.replace("\u200b", "").strip() for path in paths}
        assert {"/predict", "/v2/models/{model}/infer", "/v2/health/ready"} <= listed, listed
        operation = page.locator("#operations-Seed_API-predictOfTheOnlyModel")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        body = operation.locator("textarea.body-param__text")
        body.fill(json.dumps({"data": bundle["sample"]["input"]}))
        operation.get_by_role("button", name="Execute").click()
        answer = operation.locator(".responses-table.live-responses-table .response-col_description pre")
        answer.first.wait_for(timeout=30_000)
        text = answer.first.inner_text()
        prediction = json.loads(text)["prediction"]
        for row, expected in zip(prediction, bundle["sample"]["output"]):
            assert all(abs(a - b) <= bundle["sample"]["tolerance"] for a, b in zip(row, expected)), text
        (REPO / ".cache").mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / ".cache/docs-page.png"), full_page=False)
        browser.close()
