"""API credentials, request size limits, and encrypted workflow payloads with a codec server."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest
from fastapi.routing import APIRoute
from google.protobuf.json_format import MessageToDict
from starlette.routing import BaseRoute

from api.access import OPEN_PATHS
from api.app import create_app
from api.roles import Role, required_role
from domain.order_saga import SagaState
from settings import Settings
from stack.cli import main
from startup import ConfigError
from temporal_client import connect, replayer
from tests import factories
from tests.asgi import serve
from tests.conftest import start_saga
from wiring.activities import payment_provider_client
from wiring.root import open_bulkheads, running

pytestmark = pytest.mark.timeout(120)
ADMIN, ORDERS, READ = "admin-key-c04e", "order-key-7f3a", "read-key-19c2"
CODEC_KEY = base64.b64encode(os.urandom(32)).decode()
CARD_TOKEN_KEY = base64.b64encode(os.urandom(32)).decode()


def validated(settings: Settings, **update: object) -> Settings:
    """`settings` with `update`, validated as a process would load them (model_copy doesn't)."""
    fields = {k: getattr(settings, k) for k in Settings.model_fields}
    return Settings(**{**fields, **update})


@pytest.fixture
async def guarded(settings) -> AsyncIterator[httpx.AsyncClient]:
    own = validated(
        settings,
        # Keys are enforced once set, as in production (which would also want a
        # codec key the session's workers do not have).
        api_admin_keys=[ADMIN],
        api_order_keys=[ORDERS],
        api_read_keys=[READ],
        api_max_body_bytes=2048,
        card_token_key=CARD_TOKEN_KEY,
    )
    async for http in serve(own):
        yield http


def order_body(sku: str, customer: str) -> dict[str, object]:
    return {
        "customer_id": customer,
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_visa",
    }


async def test_credentials_are_required_and_each_key_does_what_its_role_allows(
    guarded, product, worker, engine
):
    sku, customer = await product(), factories.customer()
    body = order_body(sku, customer)
    credit = {"amount": 500}

    missing = await guarded.post("/orders", json=body)
    unknown = await guarded.post("/orders", json=body, headers={"X-API-Key": "guess"})
    read_places = await guarded.post("/orders", json=body, headers={"X-API-Key": READ})
    read_reads = await guarded.get(
        "/orders", params={"customer_id": customer}, headers={"Authorization": f"Bearer {READ}"}
    )
    placed = await guarded.post("/orders", json=body, headers={"Authorization": f"Bearer {ORDERS}"})
    order_id = placed.json()["order_id"]
    read_cancels = await guarded.post(f"/orders/{order_id}/cancel", headers={"X-API-Key": READ})
    orders_mint = await guarded.post(
        f"/wallets/{customer}/credits", json=credit, headers={"X-API-Key": ORDERS}
    )
    orders_decode = await guarded.post(
        "/codec/decode", json={"payloads": []}, headers={"X-API-Key": ORDERS}
    )
    admin_mints = await guarded.post(
        f"/wallets/{customer}/credits", json=credit, headers={"X-API-Key": ADMIN}
    )
    admin_decodes = await guarded.post(
        "/codec/decode", json={"payloads": []}, headers={"X-API-Key": ADMIN}
    )
    orders_reads = await guarded.get(f"/wallets/{customer}", headers={"X-API-Key": ORDERS})
    health = await guarded.get("/healthz")

    assert (missing.status_code, missing.json()["type"]) == (401, "/problems/unauthenticated")
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "X-API-Key" in missing.json()["detail"]
    assert (unknown.status_code, unknown.json()["title"]) == (401, "Unknown credentials")
    for refused, needed in [
        (read_places, "orders"),
        (read_cancels, "orders"),
        (orders_mint, "admin"),
        (orders_decode, "admin"),
    ]:
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert (refused.json()["type"], refused.json()["role"]) == ("/problems/forbidden", needed)
        assert f"needs the {needed} role" in refused.json()["detail"]
    assert (read_reads.status_code, read_reads.json()) == (200, [])
    assert placed.status_code == 202
    assert admin_mints.status_code == 201
    # Past the role check: the codec answers that encryption is off here.
    assert (admin_decodes.status_code, admin_decodes.json()["type"]) == (404, "/problems/no-codec")
    assert (orders_reads.status_code, orders_reads.json()["balance"]) == (200, 500)
    assert health.status_code == 200
    # Only the admin's credit moved money; the refused requests left nothing behind.
    credits = await factories.count(
        engine,
        "SELECT count(*) FROM payments.wallet_events"
        " WHERE customer_id = :c AND event_type = 'Credited'",
        c=customer,
    )
    assert credits == 1
    metrics = (await guarded.get("/metrics")).text
    assert 'status="401"' in metrics and 'status="403"' in metrics


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every route the app serves, through the routers it includes."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def test_every_route_but_the_probes_has_the_role_its_work_needs(settings):
    app = create_app(validated(settings, api_admin_keys=[ADMIN]))
    roles = {
        (method, route.path): [r for d in route.dependencies if (r := required_role(d.dependency))]
        for route in api_routes(app.routes)
        if route.path not in OPEN_PATHS
        for method in route.methods or ()
    }

    # A new route fails here until it is given a role and listed.
    assert roles == {
        ("GET", "/orders"): [Role.READ],
        ("GET", "/orders/{order_id}"): [Role.READ],
        ("GET", "/orders/{order_id}/events"): [Role.READ],
        ("GET", "/orders/{order_id}/returns/{return_id}"): [Role.READ],
        ("GET", "/products"): [Role.READ],
        ("GET", "/wallets/{customer_id}"): [Role.READ],
        ("POST", "/orders"): [Role.ORDERS],
        ("POST", "/orders/{order_id}/cancel"): [Role.ORDERS],
        ("POST", "/orders/{order_id}/returns"): [Role.ORDERS],
        ("POST", "/wallets/{customer_id}/credits"): [Role.ADMIN],
        ("POST", "/codec/decode"): [Role.ADMIN],
        ("POST", "/codec/encode"): [Role.ADMIN],
    }


def test_an_open_api_is_refused_beyond_loopback(settings):
    exposed = validated(settings, api_host="0.0.0.0")

    with pytest.raises(ConfigError, match=r"SAGA_API_HOST=0\.0\.0\.0 would serve an API open"):
        create_app(exposed)
    assert create_app(validated(settings, api_host="0.0.0.0", api_order_keys=[ORDERS]))


async def test_a_path_that_only_starts_like_a_probe_needs_a_key(guarded):
    for path in ("/docsx", "/metricsfoo", "/healthz2"):
        assert (await guarded.get(path)).status_code == 401, path


def test_production_without_keys_is_refused_before_serving(settings):
    bare = validated(settings, environment="production", payload_codec_key=CODEC_KEY)

    with pytest.raises(ConfigError, match="needs SAGA_API_READ_KEYS or SAGA_API_ORDER_KEYS"):
        create_app(bare)


async def test_a_body_over_the_limit_is_refused_and_nothing_is_placed(guarded, product, engine):
    sku, customer = await product(), factories.customer()
    body = order_body(sku, customer) | {"note": "x" * 4096}
    headers = {"X-API-Key": ORDERS}

    declared = await guarded.post("/orders", json=body, headers=headers)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        data = json.dumps(body).encode()
        for start in range(0, len(data), 512):
            yield data[start : start + 512]

    streamed = await guarded.post(
        "/orders", content=chunks(), headers={**headers, "content-type": "application/json"}
    )

    for refused in (declared, streamed):
        assert (refused.status_code, refused.json()["type"]) == (413, "/problems/too-large")
        assert "2048 bytes" in refused.json()["detail"]
    assert (
        await factories.count(
            engine, "SELECT count(*) FROM orders.orders WHERE customer_id = :c", c=customer
        )
        == 0
    )


def test_a_bad_codec_key_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("SAGA_PAYLOAD_CODEC_KEY", "not-a-real-key-zz")

    assert main(["migrate"]) == 2

    err = capsys.readouterr().err
    assert "SAGA_PAYLOAD_CODEC_KEY" in err and "32 random bytes" in err
    assert "not-a-real-key-zz" not in err and "Traceback" not in err


async def test_payloads_are_encrypted_at_rest_and_the_codec_server_decodes_them(settings, product):
    secret = validated(
        settings,
        payload_codec_key=CODEC_KEY,
        task_queue=f"sealed-{uuid.uuid4().hex[:8]}",
        api_admin_keys=[ADMIN],
    )
    client = await connect(secret.temporal())
    provider = payment_provider_client(secret.provider())
    workers, engines = open_bulkheads(client, secret, provider)
    try:
        async with running(workers):
            handle = await start_saga(
                client, secret.task_queue, [(await product(), 1)], payment_token="tok_sealed"
            )
            state: SagaState = await handle.result()
    finally:
        await provider.aclose()
        for one in engines.values():
            await one.dispose()
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]

    assert state.status == "CONFIRMED"
    assert started.metadata["encoding"] == b"binary/encrypted"
    raw = b"".join(event.SerializeToString() for event in history.events)
    # Inputs, results and failures are ciphertext; the workflow id and the
    # search attributes stay readable by design (they are how sagas are found).
    assert b"tok_sealed" not in raw and b"payment_token" not in raw and b"idempotency" not in raw
    result = await replayer(secret.temporal()).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None

    async for http in serve(secret):
        body = {"payloads": [MessageToDict(started)]}
        refused = await http.post("/codec/decode", json=body)
        decoded = await http.post("/codec/decode", json=body, headers={"X-API-Key": ADMIN})
        preflight = await http.options(
            "/codec/decode",
            headers={
                "Origin": "http://127.0.0.1:8233",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
    assert refused.status_code == 401
    assert decoded.status_code == 200
    (plain,) = decoded.json()["payloads"]
    order = json.loads(base64.b64decode(plain["data"]))
    assert (order["order_id"], order["payment_token"]) == (state.order_id, "tok_sealed")
    assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
