"""Wallets: a customer's store credit, read and topped up."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from activities.store_credit import top_up
from api import queries
from api.deps import EngineDep, FlowsDep, IdempotencyKey, SessionsDep
from api.problems import Problem
from api.roles import ADMINS, READERS
from api.schemas import ID_PATTERN, AddCreditRequest, CreditAdded, Rfc3339Time, Wallet
from db.wallet_store import DEFAULT_CURRENCY, WalletStore

router = APIRouter(prefix="/wallets", tags=["wallets"])

CustomerPath = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
CREDIT_KEY_NAMESPACE = uuid.UUID("7d1e9c52-3b6a-4f0e-8c21-5a9b4e7f1d03")


@router.get(
    "/{customer_id}",
    dependencies=READERS,
    response_model=Wallet,
    summary="A customer's store credit",
)
async def get_wallet(
    customer_id: CustomerPath,
    engine: EngineDep,
    at: Annotated[
        Rfc3339Time | None,
        Query(
            description="the wallet as it stood then, folded from its events"
            " (RFC 3339, with an offset: 2026-12-01T10:00:00Z)"
        ),
    ] = None,
) -> Wallet:
    # Read from the primary, after any commit the caller saw: a balance read
    # right after a 2PC commit shows the debit (read-your-writes).
    if at is None:
        return await queries.wallet(engine, customer_id)
    async with engine.connect() as conn:
        state = await WalletStore().state_at(conn, customer_id, at)
    return Wallet(
        customer_id=customer_id,
        balance=state.balance,
        currency=DEFAULT_CURRENCY,
        version=state.version,
        as_of=at,
    )


@router.post(
    "/{customer_id}/credits",
    dependencies=ADMINS,
    status_code=status.HTTP_201_CREATED,
    response_model=CreditAdded,
    summary="Add store credit to a customer's wallet",
    responses={200: {"model": CreditAdded, "description": "Replayed Idempotency-Key"}},
)
async def add_credit(
    customer_id: CustomerPath,
    body: AddCreditRequest,
    response: Response,
    sessions: SessionsDep,
    flows: FlowsDep,
    idempotency_key: IdempotencyKey = None,
) -> CreditAdded:
    fingerprint = body.fingerprint()
    # The stored answer keeps the hash of the request that applied the credit.
    # A nonce of this request's own rides along with it, so a concurrent
    # duplicate that merely waited for the first is told apart: it gets 200.
    nonce = uuid.uuid4().hex
    credited = await top_up(
        sessions,
        customer_id,
        body.amount,
        _step_key(idempotency_key),
        f"{fingerprint}:{nonce}",
        WalletStore(flows.wallet_snapshot_every),
    )
    first_fingerprint, _, first_nonce = credited.request_hash.partition(":")
    if first_fingerprint != fingerprint:
        raise Problem(
            409,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body",
            code="idempotency-key-reused",
        )
    if first_nonce != nonce:
        response.status_code = status.HTTP_200_OK
    return CreditAdded(
        customer_id=credited.customer_id,
        amount=credited.amount,
        balance=credited.balance,
        currency=credited.currency,
    )


def _step_key(idempotency_key: str | None) -> str:
    """A client's key, as a fixed-length part of the step's key; without one, every POST is new."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return str(uuid.uuid5(CREDIT_KEY_NAMESPACE, idempotency_key))
