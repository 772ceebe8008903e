"""Every list comes in bounded pages: a `limit` with a published maximum, a cursor that
stays cheap, and an index under the orders' listing by status."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import order_history, orders
from tests import factories
from tests.e2e.test_bad_input import refused_fields
from tests.pages import walk
from tests.statements import executed, plan, plan_nodes, reading_only

pytestmark = pytest.mark.asyncio


def _lists(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every GET of the published API whose answer is a list."""
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        if not get:
            continue
        schema = get["responses"]["200"]["content"]["application/json"]["schema"]
        if schema.get("type") == "array":
            yield path, get


def _query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}


async def test_every_list_takes_a_limit_with_a_maximum_and_a_cursor(api):
    spec = (await api.get("/openapi.json")).json()

    found = dict(_lists(spec))

    assert {"/orders", "/products", "/orders/{order_id}/events"} <= set(found)
    for path, operation in found.items():
        query = _query_parameters(operation)
        assert {"limit", "after"} <= set(query), path
        limit = query["limit"]["schema"]
        assert limit["minimum"] == 1 and limit["maximum"] >= limit["default"], path
        assert "Link" in operation["responses"]["200"]["headers"], path


async def test_a_page_over_the_maximum_is_refused_naming_limit(api):
    spec = (await api.get("/openapi.json")).json()

    for path, operation in _lists(spec):
        query = _query_parameters(operation)
        assert "limit" in query, path
        maximum = query["limit"]["schema"]["maximum"]
        url = path.replace("{order_id}", str(uuid.uuid4()))

        response = await api.get(url, params={"limit": maximum + 1})

        assert refused_fields(response) == ["query.limit"], path
        message = response.json()["errors"][0]["message"]
        assert message == f"Input should be less than or equal to {maximum}", path
        assert (await api.get(url, params={"limit": maximum})).status_code in (200, 404)


@pytest.mark.parametrize("path", ["/orders", "/products", "/orders/{id}/events"])
@pytest.mark.parametrize("cursor", ["not-a-cursor", "WzFd", "e30", "%E2%9C%93"])
async def test_a_cursor_not_given_by_a_link_is_refused_naming_after(api, path, cursor):
    url = path.format(id=uuid.uuid4())

    response = await api.get(f"{url}?after={cursor}")

    assert refused_fields(response) == ["query.after"]


async def _insert_orders(
    engine: AsyncEngine, customer_id: str, times: list[datetime], status: str = "CONFIRMED"
) -> None:
    async with engine.begin() as conn:
        for created_at in times:
            order_id = str(uuid.uuid4())
            await conn.execute(
                insert(orders).values(
                    order_id=order_id,
                    customer_id=customer_id,
                    status=status,
                    total=100,
                    currency="EUR",
                    workflow_id=f"order-{order_id}",
                    created_at=created_at,
                )
            )


async def test_orders_page_by_page_are_the_whole_list_once_in_order(api, engine):
    customer = factories.customer()
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    # Three pairs placed at the same instant: a page may end between the two of a pair.
    times = [start + timedelta(seconds=n // 2) for n in range(6)] + [start + timedelta(hours=1)]
    await _insert_orders(engine, customer, times)
    whole = (await api.get("/orders", params={"customer_id": customer})).json()

    pages = await walk(api, "/orders", customer_id=customer, status="CONFIRMED", limit=2)

    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [o["order_id"] for p in pages for o in p] == [o["order_id"] for o in whole]
    created = [o["created_at"] for o in whole]
    assert len(whole) == 7 and created == sorted(created, reverse=True)


async def test_an_orders_events_page_by_page_are_all_of_them_once_in_order(api, engine):
    order_id = str(uuid.uuid4())
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    async with engine.begin() as conn:
        for n in range(5):
            await conn.execute(
                insert(order_history).values(
                    event_id=str(uuid.uuid4()),
                    order_id=order_id,
                    source="orders",
                    aggregate_type="Order",
                    event_type=f"Step{n}",
                    payload={},
                    occurred_at=start + timedelta(seconds=n // 2),
                )
            )

    whole = (await api.get(f"/orders/{order_id}/events")).json()

    pages = await walk(api, f"/orders/{order_id}/events", limit=2)

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["event_id"] for p in pages for e in p] == [e["event_id"] for e in whole]
    # Oldest first; the two of a pair in either order (by event id).
    pairs = [sorted(e["event_type"] for e in whole[n : n + 2]) for n in (0, 2, 4)]
    assert pairs == [["Step0", "Step1"], ["Step2", "Step3"], ["Step4"]]


async def test_the_catalog_page_by_page_holds_every_product_once_by_sku(api, product):
    skus = {await product() for _ in range(3)}

    pages = await walk(api, "/products", limit=2)

    listed = [p["sku"] for page in pages for p in page]
    assert all(len(page) <= 2 for page in pages)
    assert skus <= set(listed)
    assert listed == sorted(set(listed))


def _index_conditions(node: dict[str, Any]) -> list[str]:
    return [n.get("Index Cond", "") for n in plan_nodes(node) if "Index" in n["Node Type"]]


@pytest.mark.parametrize("status", ["PENDING", "CONFIRMED", "CANCELLED"])
async def test_the_listing_by_status_reads_an_index_of_status_in_its_order(api, engine, status):
    await _insert_orders(engine, factories.customer(), [datetime.now(UTC)] * 2, status)

    with executed() as statements:
        first = await api.get("/orders", params={"status": status, "limit": 1})
        await api.get(first.links["next"]["url"])  # a next page: from a cursor
    listed = reading_only(statements, "orders.orders", about=status)

    assert len(listed) == 2, statements
    # Statistics as they are, not as the last autovacuum left them: a planner that
    # thinks the table tiny sorts a bitmap scan's rows instead (seen once, PENDING).
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE orders.orders"))
    for statement in listed:
        # No sequential scan: what is left is an index, if one serves the query.
        found = await plan(engine, statement, enable_seqscan="off")
        assert any("status" in cond for cond in _index_conditions(found)), found
        assert not [n for n in plan_nodes(found) if "Sort" in n["Node Type"]], found
