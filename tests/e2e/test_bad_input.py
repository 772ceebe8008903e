"""Bad input is refused by the rules the OpenAPI schema publishes, and leaves nothing behind.

Every refused case here was once accepted: pydantic's lax mode took a number
for a `date-time` (Unix time), `"1"`, `1.0` or `true` for an integer, and
FastAPI drops query parameters a route does not declare. Each is now a 422
problem naming the field, and nothing is written for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.service import RPCError

from domain.activities import Act, ChargePayment, PaymentCharged
from domain.order_saga import SagaState
from domain.orders import order_id_from
from tests import factories
from tests.conftest import start_saga
from tests.e2e.test_api import final_order, order_body, workflows_for
from tests.factories import eventually

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


def refused_fields(response: httpx.Response) -> list[str]:
    """The fields a 422 problem names; fails on anything else."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422
    return [error["field"] for error in problem["errors"]]


async def orders_of(engine: Any, customer_id: str) -> int:
    return await factories.count(
        engine, "SELECT count(*) FROM orders.orders WHERE customer_id = :c", c=customer_id
    )


async def wallet_rows_of(engine: Any, customer_id: str) -> int:
    return await factories.count(
        engine, "SELECT count(*) FROM payments.wallet_events WHERE customer_id = :c", c=customer_id
    )


# --- times: RFC 3339 with an offset, nothing else -----------------------------


@pytest.mark.parametrize(
    "at",
    [
        "0.5",  # Unix time: was the wallet as of 1970
        "1700000000",
        "2026-12-01 10:00:00Z",  # a space for the T
        "2026-12-01T10:00Z",  # no seconds
        "2026-12-01T10:00:00+0200",  # an offset without its colon
        "0001-01-01T00:00:00+01:00",  # before the year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after the year 9999 in UTC
    ],
)
async def test_wallet_at_that_is_not_rfc3339_with_an_offset_is_refused(api, at):
    response = await api.get(f"/wallets/{factories.customer()}", params={"at": at})

    assert refused_fields(response) == ["query.at"]


@pytest.mark.parametrize(
    "at",
    [
        "2999-01-01T00:00:00Z",
        "2999-01-01T02:00:00+02:00",
        "2998-12-31T23:00:00-01:00",
        "2999-01-01t00:00:00z",  # RFC 3339 allows either case
        "2999-01-01T00:00:00.000000-00:00",
    ],
)
async def test_wallet_at_in_any_rfc3339_spelling_reads_the_wallet_at_that_instant(api, engine, at):
    customer_id = await factories.insert_wallet(engine, balance=1234)

    response = await api.get(f"/wallets/{customer_id}", params={"at": at})

    assert response.status_code == 200, response.text
    wallet = response.json()
    assert (wallet["balance"], wallet["version"]) == (1234, 2)
    assert datetime.fromisoformat(wallet["as_of"]) == datetime(2999, 1, 1, tzinfo=UTC)


async def test_wallet_at_before_its_first_event_holds_nothing(api, engine):
    customer_id = await factories.insert_wallet(engine, balance=1234)

    response = await api.get(f"/wallets/{customer_id}", params={"at": "2000-01-01T00:00:00+02:00"})

    assert response.status_code == 200, response.text
    assert (response.json()["balance"], response.json()["version"]) == (0, 0)


# --- bodies: integers are JSON integers, ids have no blank edge ---------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": 1.0}, "items[0].quantity"),
        ({"quantity": "1"}, "items[0].quantity"),
        ({"quantity": True}, "items[0].quantity"),
        ({"store_credit": "0"}, "store_credit"),
        ({"store_credit": 0.0}, "store_credit"),
        ({"store_credit": False}, "store_credit"),
        ({"customer_id": " {c}"}, "customer_id"),
        ({"customer_id": "{c} "}, "customer_id"),
        ({"customer_id": "\u00a0{c}"}, "customer_id"),
        ({"payment_token": " "}, "payment_token"),
        ({"payment_token": "tok_visa "}, "payment_token"),
    ],
)
async def test_loose_order_body_is_refused_naming_the_field_and_starts_nothing(
    api, product, engine, client, change, field
):
    sku = await product()
    customer = factories.customer()
    body = order_body(sku, customer_id=customer)
    for key, value in change.items():
        value = value.format(c=customer) if isinstance(value, str) else value
        if key == "quantity":
            body["items"][0]["quantity"] = value
        else:
            body[key] = value

    response = await api.post("/orders", json=body)

    assert refused_fields(response) == [field]
    assert await orders_of(engine, body["customer_id"]) == 0
    assert await workflows_for(client, f"CustomerId = '{body['customer_id']}'") == []
    assert await factories.stock_of(engine, sku) == 100


@pytest.mark.parametrize("amount", [1.0, 2500.0, "5", True])
async def test_top_up_amount_that_is_not_a_json_integer_is_refused_and_mints_nothing(
    api, engine, amount
):
    customer_id = factories.customer()

    response = await api.post(f"/wallets/{customer_id}/credits", json={"amount": amount})

    assert refused_fields(response) == ["amount"]
    assert await wallet_rows_of(engine, customer_id) == 0


@pytest.mark.parametrize(
    ("spelled", "blank_edged"), [("%20{c}", " {c}"), ("{c}%20", "{c} "), ("%20", " ")]
)
async def test_customer_id_with_a_blank_edge_is_refused_on_every_route_that_takes_one(
    api, engine, spelled, blank_edged
):
    customer = factories.customer()
    path, customer_id = spelled.format(c=customer), blank_edged.format(c=customer)

    read = await api.get(f"/wallets/{path}")
    top_up = await api.post(f"/wallets/{path}/credits", json={"amount": 5})
    listed = await api.get("/orders", params={"customer_id": customer_id})

    assert refused_fields(read) == ["path.customer_id"]
    assert refused_fields(top_up) == ["path.customer_id"]
    assert refused_fields(listed) == ["query.customer_id"]
    assert await wallet_rows_of(engine, customer_id) == 0


@pytest.mark.parametrize("reason", ["changed\x00my mind", "changed\nmy mind", "red\x1b[31m"])
async def test_cancel_reason_with_a_control_character_is_refused_and_the_order_goes_on(
    api, product, client, custom_worker, reason
):
    # A NUL reached the saga's failure_reason, which PostgreSQL refuses: the
    # compensation retried for ever. Now the API refuses it, as the schema says.
    charge_may_finish = asyncio.Event()

    @activity.defn(name=Act.CHARGE_PAYMENT)
    async def charge_payment(cmd: ChargePayment) -> PaymentCharged:
        await charge_may_finish.wait()
        return PaymentCharged(payment_id=str(uuid.uuid4()), amount=cmd.amount)

    queue = await custom_worker({Act.CHARGE_PAYMENT: charge_payment})
    handle = await start_saga(client, queue, [(await product(), 1)])
    order_id = order_id_from(handle.id)
    try:

        async def state() -> SagaState:
            current: SagaState = await handle.query("state", result_type=SagaState)
            return current

        await eventually(state, lambda s: s.current_step == Act.CHARGE_PAYMENT)
        response = await api.post(f"/orders/{order_id}/cancel", json={"reason": reason})
        charge_may_finish.set()

        assert refused_fields(response) == ["reason"]
        order = await final_order(api, order_id)
        assert (order["status"], order["compensations"]) == ("CONFIRMED", [])
    finally:
        charge_may_finish.set()
        with contextlib.suppress(RPCError):  # already closed: nothing to stop
            await handle.terminate("test over")


@pytest.mark.parametrize("route", ["/orders", "/wallets/{c}/credits"])
async def test_idempotency_key_with_a_control_character_is_refused_and_writes_nothing(
    api, product, engine, route
):
    customer = factories.customer()
    body = (
        order_body(await product(), customer_id=customer) if route == "/orders" else {"amount": 5}
    )

    response = await api.post(
        route.format(c=customer), json=body, headers={"Idempotency-Key": "key\tone"}
    )

    assert refused_fields(response) == ["header.Idempotency-Key"]
    assert await orders_of(engine, customer) == 0
    assert await wallet_rows_of(engine, customer) == 0


# --- query strings: only what the route declares, each once, as its schema says


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=5.0", "query.limit"),
        ("limit=%205", "query.limit"),
        ("limit=%2B5", "query.limit"),
        ("limit=5_0", "query.limit"),
        ("limit=05", "query.limit"),
        ("statuss=PENDING", "query.statuss"),  # a typo listed every order
        ("limit=500&limit=5", "query.limit"),  # FastAPI took the last
        ("status=PENDING&status=CONFIRMED", "query.status"),
    ],
)
async def test_loose_order_listing_query_is_refused_naming_the_parameter(api, query, field):
    response = await api.get(f"/orders?{query}")

    assert refused_fields(response) == [field]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/products?sort=price", "query.sort"),
        ("/wallets/{c}?as_of=2026-12-01T10:00:00Z", "query.as_of"),
        ("/wallets/{c}?at=2026-12-01T10:00:00Z&at=2026-12-02T10:00:00Z", "query.at"),
        (f"/orders/{uuid.uuid4()}?verbose=1", "query.verbose"),
        (f"/orders/{uuid.uuid4()}/events?since=1", "query.since"),
    ],
)
async def test_unknown_or_repeated_query_parameter_is_refused_on_reads(api, path, field):
    response = await api.get(path.format(c=factories.customer()))

    assert refused_fields(response) == [field]


async def test_an_order_posted_with_its_mode_in_the_query_is_refused_and_starts_nothing(
    api, product, engine, client
):
    # Dropped, the parameter placed an orchestrated order the client did not ask for.
    body = order_body(await product())

    response = await api.post("/orders?mode=choreography", json=body)

    assert refused_fields(response) == ["query.mode"]
    assert await orders_of(engine, body["customer_id"]) == 0
    assert await workflows_for(client, f"CustomerId = '{body['customer_id']}'") == []


async def test_a_top_up_posted_with_an_unknown_query_parameter_mints_nothing(api, engine):
    customer_id = factories.customer()

    response = await api.post(f"/wallets/{customer_id}/credits?amount=5", json={"amount": 5})

    assert refused_fields(response) == ["query.amount"]
    assert await wallet_rows_of(engine, customer_id) == 0


# --- the published schema, walked: what it says is what is refused -----------

LOOSE_QUERY = {"date-time": ["1700000000", "0.5"], "integer": ["1.0", "%2B1", "true"]}
LOOSE_INTEGERS = [1.0, "1", True]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`, and take the non-null arm of an optional."""
    if "$ref" in schema:
        return _resolve(spec, spec["components"]["schemas"][schema["$ref"].split("/")[-1]])
    arms = [arm for arm in schema.get("anyOf", []) if arm.get("type") != "null"]
    return _resolve(spec, arms[0]) if len(arms) == 1 else schema


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            # Path parameters get a fresh valid id: only the query is at fault.
            yield method.upper(), re.sub(r"\{[^}]+\}", factories.customer(), path), operation


def _leaves(value: Any, field: str = "") -> Iterator[tuple[str, tuple[Any, ...], Any]]:
    """(field as problems name it, where in the body, value) of every scalar in a body."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{field}.{key}" if field else key
            for leaf, where, scalar in _leaves(item, name):
                yield leaf, (key, *where), scalar
    elif isinstance(value, list):
        for n, item in enumerate(value):
            for leaf, where, scalar in _leaves(item, f"{field}[{n}]"):
                yield leaf, (n, *where), scalar
    else:
        yield field, (), value


def _replaced(body: Any, where: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(body)
    target = changed
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    return changed


async def test_every_query_parameter_refuses_what_its_published_schema_does_not_allow(api):
    spec = (await api.get("/openapi.json")).json()
    checked: set[str] = set()

    for method, url, operation in _operations(spec):
        cases = [("zz_unknown", "1")]
        for parameter in operation.get("parameters", []):
            schema = _resolve(spec, parameter["schema"])
            kind = str(schema.get("format", schema.get("type")))
            if parameter["in"] == "query":
                cases += [(parameter["name"], loose) for loose in LOOSE_QUERY.get(kind, [])]
        for name, loose in cases:
            response = await api.request(method, f"{url}?{name}={loose}")
            assert f"query.{name}" in refused_fields(response), (method, url, name, loose)
            checked.add(f"{method} query.{name}")

    assert {"GET query.at", "GET query.limit", "POST query.zz_unknown"} <= checked


async def test_every_integer_of_a_published_example_body_refuses_what_is_not_an_integer(api):
    spec = (await api.get("/openapi.json")).json()
    checked: set[str] = set()

    for method, url, operation in _operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        schema = _resolve(spec, content.get("application/json", {}).get("schema", {}))
        # A header the route requires is given, so the body's field is all that is wrong.
        headers = {
            p["name"]: f"probe-{uuid.uuid4()}"
            for p in operation.get("parameters", [])
            if p["in"] == "header" and p.get("required")
        }
        for example in schema.get("examples", []):
            for field, where, value in _leaves(example):
                if not isinstance(value, int) or isinstance(value, bool):
                    continue
                for loose in LOOSE_INTEGERS:
                    body = _replaced(example, where, loose)
                    response = await api.request(method, url, json=body, headers=headers)
                    assert refused_fields(response) == [field], (method, url, field, loose)
                checked.add(field)

    assert {"items[0].quantity", "store_credit", "amount"} <= checked
