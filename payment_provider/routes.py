"""`/v1`: authorizations, captures, voids, refunds; every POST honours `Idempotency-Key`."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from payment_provider.schemas import ID, AuthorizeRequest, CaptureRequest, RefundRequest
from payment_provider.state import Outcome, ProviderState

router = APIRouter(prefix="/v1", tags=["payments"])


def provider_state(request: Request) -> ProviderState:
    state: ProviderState = request.app.state.provider
    return state


Provider = Annotated[ProviderState, Depends(provider_state)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


def _fingerprint(request: Request, payload: BaseModel | None) -> str:
    body = payload.model_dump(mode="json") if payload is not None else {}
    return json.dumps([request.method, request.url.path, body], sort_keys=True)


def _respond(outcome: Outcome) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


@router.post("/authorizations", status_code=201)
async def create_authorization(
    payload: AuthorizeRequest, request: Request, provider: Provider, key: IdempotencyKey = None
) -> JSONResponse:
    def authorize() -> tuple[int, dict[str, object]]:
        return 201, provider.ledger.authorize(payload, key).view()

    return _respond(await provider.execute(key, _fingerprint(request, payload), authorize))


@router.get("/authorizations/{authorization_id}")
async def get_authorization(authorization_id: str, provider: Provider) -> JSONResponse:
    return JSONResponse(provider.ledger.get(authorization_id).view())


@router.post("/authorizations/{authorization_id}/capture")
async def capture_authorization(
    authorization_id: str,
    request: Request,
    provider: Provider,
    payload: CaptureRequest | None = None,
    key: IdempotencyKey = None,
) -> JSONResponse:
    payload = payload or CaptureRequest()
    amount = payload.amount

    def capture() -> tuple[int, dict[str, object]]:
        return 200, provider.ledger.capture(authorization_id, amount, key).view()

    return _respond(await provider.execute(key, _fingerprint(request, payload), capture))


@router.post("/authorizations/{authorization_id}/void")
async def void_authorization(
    authorization_id: str, request: Request, provider: Provider, key: IdempotencyKey = None
) -> JSONResponse:
    def void() -> tuple[int, dict[str, object]]:
        return 200, provider.ledger.void(authorization_id, key).view()

    return _respond(await provider.execute(key, _fingerprint(request, None), void))


@router.post("/refunds", status_code=201)
async def create_refund(
    payload: RefundRequest, request: Request, provider: Provider, key: IdempotencyKey = None
) -> JSONResponse:
    def refund() -> tuple[int, dict[str, object]]:
        return 201, provider.ledger.refund(payload, key).view()

    return _respond(await provider.execute(key, _fingerprint(request, payload), refund))


@router.get("/payments")
async def list_payments(
    order_id: Annotated[str, Query(min_length=1, max_length=200, pattern=ID)], provider: Provider
) -> dict[str, object]:
    return provider.ledger.for_order(order_id)
