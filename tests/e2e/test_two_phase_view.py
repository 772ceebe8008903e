"""What an operator reads of an order's 2PC while phase 2 is still going on."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories
from tests.e2e.test_api import final_order, order_body
from tests.factories import eventually

pytestmark = pytest.mark.asyncio


async def test_a_committing_order_shows_its_logged_decision_and_who_has_acknowledged(
    api, product, engine, provider_admin
):
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=5000)
    capture_down = {"status": 503, "path_contains": "/capture"}
    assert (await provider_admin.post("/admin/faults", json=capture_down)).status_code == 201
    body = order_body(sku, 2, customer_id=customer, store_credit=800)
    order_id = (await api.post("/orders", json=body)).json()["order_id"]

    async def view() -> dict[str, Any]:
        response = await api.get(f"/orders/{order_id}")
        return dict(response.json()) if response.status_code == 200 else {"two_phase": None}

    def committing(order: dict[str, Any]) -> bool:
        progress = order["two_phase"] or {}
        return set(progress.get("acknowledged", [])) == {"stock", "store_credit"}

    # Stock and credit are committed; the card's capture retries.
    stuck = await eventually(view, committing, deadline_s=30)
    await provider_admin.delete("/admin/faults")

    assert stuck["status"] == "PENDING"
    assert stuck["two_phase"]["decision"] == "COMMIT"
    assert stuck["two_phase"]["phase"] == "commit"
    assert stuck["two_phase"]["votes"] == {"stock": "YES", "store_credit": "YES", "card": "YES"}
    final = await final_order(api, order_id)
    assert final["status"] == "CONFIRMED"
    assert final["two_phase"]["phase"] == "done"
    assert sorted(final["two_phase"]["acknowledged"]) == ["card", "stock", "store_credit"]
