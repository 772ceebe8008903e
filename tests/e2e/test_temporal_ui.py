"""The Temporal Web UI, in a real headless Chromium: sagas listed by OrderStatus, a saga's
summary (what the order is) and its steps.

A dev server with its UI starts for this test; a confirmed, a compensated and
a 2PC order run on it; Chromium (Debian's, driven by Selenium) then reads the
UI as an operator would. Screenshots go to test-output/temporal-ui/.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.client import WorkflowFailureError

from domain.order_saga import SagaState
from domain.order_summary import TIMES
from domain.orders import workflow_id_for
from settings import Settings
from stack.ports import free_port
from stack.temporal import SEARCH_ATTRIBUTES, TemporalDevServer
from temporal_client import connect
from tests import factories
from tests.asgi import serve
from tests.conftest import start_saga
from wiring.activities import payment_provider_client
from wiring.root import open_bulkheads, running

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "temporal-ui"

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium and ChromeDriver are not installed (Debian packages chromium and "
        "chromium-driver; .ci/run installs them)",
    ),
]


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="saga-chromium-")
    # This machine's network is closed: keep Chromium from calling home.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def listing(ui: str, status: str) -> str:
    query = 'OrderStatus="' + status + '"'
    return f"{ui}?query={quote(query)}"


# What the UI keeps in the browser once an operator adds the OrderSummary column through
# its "Configure columns" drawer (the list cannot show user metadata itself).
COLUMNS = ["Status", "Workflow ID", "OrderSummary", "Type", "Start", "End"]


def show_summary_column(driver, ui: str) -> None:
    driver.get(ui)
    stored = json.dumps({"default": [{"label": label} for label in COLUMNS]})
    driver.execute_script(
        "localStorage.setItem('namespace-workflow-table-columns', arguments[0])", stored
    )


def wait_for_text(driver, texts: list[str], within_s: float = 45) -> str:
    deadline = time.monotonic() + within_s
    while True:
        page = driver.find_element("tag name", "body").text
        if all(text in page for text in texts):
            return str(page)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{texts} not shown within {within_s} s; page reads:\n{page[:6000]}"
            )
        time.sleep(0.5)


async def test_the_ui_lists_sagas_by_status_and_shows_a_sagas_steps(
    settings, product, engine, browser, tmp_path
):
    server = TemporalDevServer(
        free_port(), free_port(), None, tmp_path / "logs", SEARCH_ATTRIBUTES, headless=False
    )
    await server.start()
    try:
        own = Settings(
            **{
                **{k: getattr(settings, k) for k in Settings.model_fields},
                "temporal_address": server.address,
                "task_queue": f"ui-{uuid.uuid4().hex[:6]}",
            }
        )
        client = await connect(own.temporal())
        provider = payment_provider_client(own.provider())
        workers, engines = open_bulkheads(client, own, provider)
        sku = await product(stock=10, price=1200)
        customer = await factories.insert_wallet(engine, balance=500)
        ordered = {
            "customer_id": factories.customer(),
            "items": [{"sku": sku, "quantity": 2}],
            "payment_token": "tok_visa",
        }
        summary = f"2 {TIMES} {sku} for {ordered['customer_id']}, €24.00, card"
        try:
            async with running(workers), contextlib.asynccontextmanager(serve)(own) as api:
                # Through the API, which starts each saga with its summary.
                placed = await api.post("/orders", json=ordered)
                assert placed.status_code == 202, placed.text
                confirmed = client.get_workflow_handle(
                    workflow_id_for(placed.json()["order_id"]), result_type=SagaState
                )
                declined = await start_saga(
                    client, own.task_queue, [(sku, 1)], payment_token="tok_decline"
                )
                settled = await start_saga(
                    client, own.task_queue, [(sku, 1)], customer_id=customer, store_credit=500
                )
                for handle in (confirmed, declined, settled):
                    with contextlib.suppress(WorkflowFailureError):
                        await handle.result()
        finally:
            await provider.aclose()
            for one in engines.values():
                await one.dispose()
        OUTPUT.mkdir(parents=True, exist_ok=True)
        ui = f"{server.ui_url}/namespaces/default/workflows"

        show_summary_column(browser, ui)
        browser.get(listing(ui, "CONFIRMED"))
        # The list says what each order is, without opening it.
        listed = wait_for_text(browser, [confirmed.id, settled.id, summary])
        browser.save_screenshot(str(OUTPUT / "confirmed-sagas.png"))
        assert declined.id not in listed

        browser.get(listing(ui, "CANCELLED"))
        listed = wait_for_text(browser, [declined.id])
        browser.save_screenshot(str(OUTPUT / "cancelled-sagas.png"))
        assert confirmed.id not in listed

        run_id = (await confirmed.describe()).run_id
        browser.get(f"{ui}/{confirmed.id}/{run_id}/history")
        # The saga's page says what the order is (its summary), above its steps.
        wait_for_text(browser, [summary, "Reserve 2 unit(s)", "Charge 2400 EUR", "Create shipment"])
        browser.save_screenshot(str(OUTPUT / "saga-steps.png"))
        assert (OUTPUT / "saga-steps.png").stat().st_size > 10_000
    finally:
        await server.stop()
