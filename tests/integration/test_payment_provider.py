"""The payment provider simulator, served by a real uvicorn server and driven over HTTP.

One server for the module; tests isolate by unique order ids and idempotency
keys, and every test starts and ends with no faults installed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from payment_provider.embedded import EmbeddedProvider
from stack.ports import free_port


@pytest.fixture(scope="module")
async def provider_url() -> AsyncIterator[str]:
    server = EmbeddedProvider(free_port())
    await server.start()
    yield server.url
    await server.stop()


@pytest.fixture
async def http(provider_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=provider_url, timeout=10) as client:
        await client.delete("/admin/faults")
        yield client
        await client.delete("/admin/faults")


def _order() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


def _key() -> str:
    return f"key-{uuid.uuid4().hex}"


def _auth_body(order_id: str, amount: int = 5000, token: str = "tok_visa") -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount, "currency": "eur", "payment_token": token}


async def _authorize(http: httpx.AsyncClient, order_id: str, amount: int = 5000) -> str:
    response = await http.post("/v1/authorizations", json=_auth_body(order_id, amount))
    assert response.status_code == 201, response.text
    auth_id: str = response.json()["id"]
    return auth_id


async def _captured(http: httpx.AsyncClient, order_id: str, amount: int = 5000) -> str:
    auth_id = await _authorize(http, order_id, amount)
    response = await http.post(f"/v1/authorizations/{auth_id}/capture")
    assert response.status_code == 200, response.text
    return auth_id


async def _fault(http: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    response = await http.post("/admin/faults", json=spec)
    assert response.status_code == 201, response.text
    fault: dict[str, Any] = response.json()
    return fault


# --- payments ---------------------------------------------------------------


async def test_authorize_capture_refund_are_listed_for_the_order(http: httpx.AsyncClient) -> None:
    order_id = _order()
    keys = [_key() for _ in range(3)]

    auth = await http.post(
        "/v1/authorizations", json=_auth_body(order_id), headers={"Idempotency-Key": keys[0]}
    )
    assert auth.status_code == 201
    body = auth.json()
    assert body["id"].startswith("auth_")
    assert (body["status"], body["amount"], body["currency"], body["order_id"]) == (
        "authorized",
        5000,
        "EUR",
        order_id,
    )

    capture = await http.post(
        f"/v1/authorizations/{body['id']}/capture",
        json={"amount": 4000},
        headers={"Idempotency-Key": keys[1]},
    )
    assert capture.status_code == 200
    assert (capture.json()["status"], capture.json()["amount_captured"]) == ("captured", 4000)

    refund = await http.post(
        "/v1/refunds",
        json={"authorization_id": body["id"], "amount": 1500},
        headers={"Idempotency-Key": keys[2]},
    )
    assert refund.status_code == 201
    assert refund.json()["id"].startswith("re_")

    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    [held] = payments["authorizations"]
    assert (held["status"], held["amount_captured"], held["amount_refunded"]) == (
        "captured",
        4000,
        1500,
    )
    assert held["idempotency_key"] == keys[0]
    assert [(c["amount"], c["idempotency_key"]) for c in payments["captures"]] == [(4000, keys[1])]
    assert [(r["amount"], r["idempotency_key"]) for r in payments["refunds"]] == [(1500, keys[2])]


async def test_full_refund_marks_the_authorization_refunded(http: httpx.AsyncClient) -> None:
    auth_id = await _captured(http, _order(), amount=700)
    refund = await http.post("/v1/refunds", json={"authorization_id": auth_id, "amount": 700})
    assert refund.status_code == 201
    assert (await http.get(f"/v1/authorizations/{auth_id}")).json()["status"] == "refunded"


async def test_void_releases_an_authorization(http: httpx.AsyncClient) -> None:
    auth_id = await _authorize(http, _order())
    void = await http.post(f"/v1/authorizations/{auth_id}/void")
    assert (void.status_code, void.json()["status"]) == (200, "voided")


@pytest.mark.parametrize(
    ("token", "status", "error_type"),
    [
        ("tok_decline", 402, "card_declined"),
        ("tok_insufficient", 402, "insufficient_funds"),
        ("tok_invalid", 400, "invalid_payment_token"),
    ],
)
async def test_test_tokens_refuse_and_authorize_nothing(
    http: httpx.AsyncClient, token: str, status: int, error_type: str
) -> None:
    order_id = _order()
    response = await http.post("/v1/authorizations", json=_auth_body(order_id, token=token))
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert response.json()["error"]["message"]
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert payments["authorizations"] == []


async def test_invalid_input_is_422_naming_the_field(http: httpx.AsyncClient) -> None:
    body = {**_auth_body(_order()), "amount": -5}
    response = await http.post("/v1/authorizations", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request"
    assert response.json()["error"]["param"] == "amount"

    unknown = await http.get("/v1/nowhere")
    assert (unknown.status_code, unknown.json()["error"]["type"]) == (404, "resource_missing")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", " "),
        ("order_id", "order\x00x"),
        ("payment_token", "tok_visa "),
        ("payment_token", " "),
    ],
)
async def test_blank_edged_or_control_character_id_is_422_naming_it(
    http: httpx.AsyncClient, field: str, value: str
) -> None:
    response = await http.post("/v1/authorizations", json={**_auth_body(_order()), field: value})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == field


# --- idempotency ------------------------------------------------------------


async def test_same_key_replays_the_stored_response_and_applies_once(
    http: httpx.AsyncClient,
) -> None:
    order_id, key = _order(), _key()
    headers = {"Idempotency-Key": key}
    first = await http.post("/v1/authorizations", json=_auth_body(order_id), headers=headers)
    again = await http.post("/v1/authorizations", json=_auth_body(order_id), headers=headers)

    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert len(payments["authorizations"]) == 1


async def test_a_refusal_is_replayed_under_its_key(http: httpx.AsyncClient) -> None:
    order_id, headers = _order(), {"Idempotency-Key": _key()}
    body = _auth_body(order_id, token="tok_decline")
    first = await http.post("/v1/authorizations", json=body, headers=headers)
    again = await http.post("/v1/authorizations", json=body, headers=headers)
    assert (
        (again.status_code, again.json())
        == (first.status_code, first.json())
        == (
            402,
            first.json(),
        )
    )


async def test_concurrent_posts_with_one_key_authorize_once(http: httpx.AsyncClient) -> None:
    order_id, headers = _order(), {"Idempotency-Key": _key()}
    responses = await asyncio.gather(
        *(
            http.post("/v1/authorizations", json=_auth_body(order_id), headers=headers)
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert len(payments["authorizations"]) == 1


@pytest.mark.parametrize("change", ["body", "path"])
async def test_key_reused_with_other_parameters_is_409(
    http: httpx.AsyncClient, change: str
) -> None:
    order_id, headers = _order(), {"Idempotency-Key": _key()}
    first = await http.post("/v1/authorizations", json=_auth_body(order_id), headers=headers)
    if change == "body":
        reused = await http.post(
            "/v1/authorizations", json=_auth_body(order_id, amount=1), headers=headers
        )
    else:
        reused = await http.post(
            f"/v1/authorizations/{first.json()['id']}/capture", headers=headers
        )
    assert reused.status_code == 409
    assert reused.json()["error"]["type"] == "idempotency_key_reused"
    auth = (await http.get(f"/v1/authorizations/{first.json()['id']}")).json()
    assert (auth["status"], auth["amount"]) == ("authorized", 5000)


# --- state errors -----------------------------------------------------------


async def test_capture_more_than_authorized_is_400(http: httpx.AsyncClient) -> None:
    auth_id = await _authorize(http, _order(), amount=1000)
    response = await http.post(f"/v1/authorizations/{auth_id}/capture", json={"amount": 1001})
    assert (response.status_code, response.json()["error"]["type"]) == (400, "amount_too_large")


async def test_capture_of_a_voided_authorization_is_409(http: httpx.AsyncClient) -> None:
    auth_id = await _authorize(http, _order())
    assert (await http.post(f"/v1/authorizations/{auth_id}/void")).status_code == 200
    response = await http.post(f"/v1/authorizations/{auth_id}/capture")
    assert (response.status_code, response.json()["error"]["type"]) == (
        409,
        "authorization_voided",
    )


async def test_void_of_a_captured_authorization_is_409(http: httpx.AsyncClient) -> None:
    auth_id = await _captured(http, _order())
    response = await http.post(f"/v1/authorizations/{auth_id}/void")
    assert (response.status_code, response.json()["error"]["type"]) == (409, "already_captured")


async def test_refund_of_an_uncaptured_authorization_is_409(http: httpx.AsyncClient) -> None:
    auth_id = await _authorize(http, _order())
    response = await http.post("/v1/refunds", json={"authorization_id": auth_id, "amount": 1})
    assert (response.status_code, response.json()["error"]["type"]) == (409, "not_captured")


async def test_refund_beyond_captured_minus_refunded_is_400(http: httpx.AsyncClient) -> None:
    auth_id = await _captured(http, _order(), amount=1000)
    first = await http.post("/v1/refunds", json={"authorization_id": auth_id, "amount": 600})
    assert first.status_code == 201
    over = await http.post("/v1/refunds", json={"authorization_id": auth_id, "amount": 401})
    assert (over.status_code, over.json()["error"]["type"]) == (400, "amount_too_large")


# --- faults -----------------------------------------------------------------


async def test_status_fault_answers_the_next_count_requests(http: httpx.AsyncClient) -> None:
    await _fault(http, status=503, count=2)
    order_id = _order()
    statuses = [
        (await http.post("/v1/authorizations", json=_auth_body(order_id))).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 503, 201]


async def test_injected_errors_are_json_and_apply_nothing(http: httpx.AsyncClient) -> None:
    await _fault(http, status=500, count=1)
    order_id = _order()
    response = await http.post("/v1/authorizations", json=_auth_body(order_id))
    assert (response.status_code, response.json()["error"]["type"]) == (500, "api_error")
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert payments["authorizations"] == []


async def test_429_carries_retry_after(http: httpx.AsyncClient) -> None:
    await _fault(http, status=429, retry_after=7, count=1)
    response = await http.post("/v1/authorizations", json=_auth_body(_order()))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["type"] == "rate_limited"


async def test_latency_delays_the_answer(http: httpx.AsyncClient) -> None:
    await _fault(http, mode="latency", seconds=0.5, count=1)
    started = time.monotonic()
    response = await http.post("/v1/authorizations", json=_auth_body(_order()))
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.5
    assert (await http.get("/admin/faults")).json()["faults"] == []


async def test_hang_outlasts_a_client_timeout_and_applies_nothing(
    http: httpx.AsyncClient, provider_url: str
) -> None:
    await _fault(http, mode="hang", seconds=30)
    order_id = _order()
    async with httpx.AsyncClient(base_url=provider_url, timeout=httpx.Timeout(5, read=0.3)) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post("/v1/authorizations", json=_auth_body(order_id))
    await http.delete("/admin/faults")
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert payments["authorizations"] == []


async def test_error_rate_fails_about_that_share_of_requests(http: httpx.AsyncClient) -> None:
    await _fault(http, mode="error_rate", rate=0.3, status=500, for_seconds=60, seed=7)
    order_id = _order()
    statuses = [
        (await http.post("/v1/authorizations", json=_auth_body(order_id))).status_code
        for _ in range(50)
    ]
    assert set(statuses) == {201, 500}
    assert 8 <= statuses.count(500) <= 22


async def test_down_closes_connections_without_answering(
    http: httpx.AsyncClient, provider_url: str
) -> None:
    await _fault(http, mode="down", for_seconds=30)
    order_id = _order()
    async with httpx.AsyncClient(base_url=provider_url, timeout=5) as client:
        for _ in range(2):  # a fresh connection and whatever the pool kept
            with pytest.raises(httpx.TransportError):
                await client.post("/v1/authorizations", json=_auth_body(order_id))
    await http.delete("/admin/faults")
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert payments["authorizations"] == []


@pytest.mark.parametrize("hold_s", [0, 5])
async def test_lose_answer_applies_the_request_and_the_key_replays_it(
    http: httpx.AsyncClient, provider_url: str, hold_s: float
) -> None:
    await _fault(http, mode="lose_answer", seconds=hold_s, count=1)
    order_id, key = _order(), _key()
    async with httpx.AsyncClient(base_url=provider_url, timeout=1) as client:
        with pytest.raises(httpx.ReadTimeout if hold_s else httpx.RemoteProtocolError):
            await client.post(
                "/v1/authorizations", json=_auth_body(order_id), headers={"Idempotency-Key": key}
            )
        again = await client.post(
            "/v1/authorizations", json=_auth_body(order_id), headers={"Idempotency-Key": key}
        )
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    payments = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert [a["id"] for a in payments["authorizations"]] == [again.json()["id"]]


async def test_a_fault_with_path_contains_spares_other_paths(http: httpx.AsyncClient) -> None:
    await _fault(http, status=503, count=1, path_contains="/capture")
    order_id = _order()
    auth = await http.post("/v1/authorizations", json=_auth_body(order_id))
    assert auth.status_code == 201
    capture = f"/v1/authorizations/{auth.json()['id']}/capture"
    assert (await http.post(capture)).status_code == 503
    assert (await http.post(capture)).status_code == 200


async def test_fault_expires_after_for_seconds(http: httpx.AsyncClient) -> None:
    await _fault(http, status=503, for_seconds=2.0)
    assert (await http.get("/v1/payments", params={"order_id": "x"})).status_code == 503
    deadline = time.monotonic() + 10
    while (await http.get("/v1/payments", params={"order_id": "x"})).status_code == 503:
        assert time.monotonic() < deadline, "fault outlived for_seconds"
        await asyncio.sleep(0.05)
    assert (await http.get("/admin/faults")).json()["faults"] == []


async def test_delete_clears_every_fault(http: httpx.AsyncClient) -> None:
    await _fault(http, status=503)
    await _fault(http, mode="latency", seconds=2)
    listed = (await http.get("/admin/faults")).json()["faults"]
    assert [f.get("mode") for f in listed] == ["status", "latency"]

    assert (await http.delete("/admin/faults")).json() == {"cleared": 2}
    assert (await http.get("/admin/faults")).json()["faults"] == []
    response = await http.post("/v1/authorizations", json=_auth_body(_order()))
    assert response.status_code == 201


async def test_admin_is_never_faulted(http: httpx.AsyncClient) -> None:
    await _fault(http, mode="down")
    await _fault(http, status=503)
    assert (await http.get("/admin/faults")).status_code == 200
    assert (await http.post("/admin/faults", json={"status": 500, "count": 1})).status_code == 201
    assert (await http.delete("/admin/faults")).status_code == 200


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"status": 418}, "status"),
        ({"mode": "sideways"}, "mode"),
        ({"mode": "latency"}, "seconds"),
        ({"mode": "error_rate", "rate": 1.5}, "rate"),
        ({"status": 503, "count": 0}, "count"),
        ({"status": 500, "retry_after": 3}, "retry_after"),
        ({"mode": "down", "for_seconds": -1}, "for_seconds"),
        # Numbers are JSON numbers: pydantic's lax mode took these.
        ({"status": 503, "count": "2"}, "count"),
        ({"status": 503, "count": 2.0}, "count"),
        ({"status": 503, "count": True}, "count"),
        ({"mode": "latency", "seconds": "0.5"}, "seconds"),
        ({"mode": "latency", "seconds": True}, "seconds"),
        ({"mode": "error_rate", "rate": "0.3"}, "rate"),
        ({"mode": "error_rate", "rate": 0.3, "seed": "7"}, "seed"),
        ({"status": 429, "retry_after": "3"}, "retry_after"),
        ({"mode": "down", "for_seconds": "5"}, "for_seconds"),
    ],
)
async def test_bad_fault_is_422_naming_the_field(
    http: httpx.AsyncClient, spec: dict[str, Any], field: str
) -> None:
    response = await http.post("/admin/faults", json=spec)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == field
    assert (await http.get("/admin/faults")).json()["faults"] == []
