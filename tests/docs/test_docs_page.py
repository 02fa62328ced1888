"""The API page (/docs, Swagger UI served from the binary) in a real headless Chromium: it loads,
lists the routes of /openapi.json, and "Try it out" on POST /predict and on v2 infer gets the
sample's answer.
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


def try_it(page, operation_id, body, parameters=None):
    """Swagger UI's "Try it out" on one operation: chooses the path parameters (the page offers the
    served models as a list) and fills the body, executes, and returns the answer shown."""
    operation = page.locator(f"#operations-{operation_id}")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    for name, value in (parameters or {}).items():
        operation.locator(f'tr[data-param-name="{name}"] select').select_option(value)
    operation.locator("textarea.body-param__text").fill(json.dumps(body))
    operation.get_by_role("button", name="Execute").click()
    answer = operation.locator(".responses-table.live-responses-table .response-col_description pre")
    answer.first.wait_for(timeout=30_000)
    return json.loads(answer.first.inner_text())


def assert_sample(rows, sample):
    assert len(rows) == len(sample["output"]), rows
    for row, expected in zip(rows, sample["output"]):
        assert all(abs(a - b) <= sample["tolerance"] for a, b in zip(row, expected)), rows


def test_the_api_page_lists_the_routes_and_tries_predict_and_v2_infer(server):
    sample = read_bundle(REPO / "models/iris-svc")["sample"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 2400})
        page.goto(f"http://{server.http}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        listed = {path.replace("\u200b", "").strip() for path in paths}
        assert {"/predict", "/v2/models/{model}/infer", "/v2/health/ready"} <= listed, listed

        answer = try_it(page, "Seed_API-predictOfTheOnlyModel", {"data": sample["input"]})
        assert_sample(answer["prediction"], sample)
        (REPO / ".cache").mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / ".cache/docs-page.png"), full_page=False)

        rows = len(sample["input"])
        request = {"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32",
                               "data": [value for row in sample["input"] for value in row]}]}
        answer = try_it(page, "Open_Inference_Protocol_v2-modelInfer", request, {"model": "iris-svc"})
        [probabilities] = [output for output in answer["outputs"] if output["name"] == "probabilities"]
        assert probabilities["shape"] == [rows, 3], answer
        data = probabilities["data"]
        assert_sample([data[row * 3:(row + 1) * 3] for row in range(rows)], sample)
        browser.close()


def test_try_it_out_on_predict_takes_an_image_file():
    """An image bundle's page: "Try it out" on POST /predict/label offers the image/* body as a
    file to choose; the page sends the file itself, and shows the page's turn."""
    bundle = REPO / "models/document-orientation"
    image_server = Server([bundle])
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 2400})
            page.goto(f"http://{image_server.http}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            operation = page.locator("#operations-Seed_API-predictLabelOfTheOnlyModel")
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.locator(".opblock-section-request-body select").select_option("image/*")
            operation.locator('input[type="file"]').set_input_files(str(bundle / "document-rotated.jpg"))
            operation.get_by_role("button", name="Execute").click()
            answer = operation.locator(".responses-table.live-responses-table .response-col_description pre")
            answer.first.wait_for(timeout=30_000)
            assert json.loads(answer.first.inner_text()) == {"prediction": ["270"]}
            browser.close()
    finally:
        image_server.stop()
