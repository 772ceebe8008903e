"""The provider's books: authorizations, their captures and refunds.

Plain synchronous code: `ProviderState.execute` runs every change under its
lock, so a check and the change it allows can never interleave with another
request's.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from payment_provider.errors import ProviderError
from payment_provider.schemas import AuthorizeRequest, RefundRequest

# Test tokens, as a card network's sandbox has them; any other token approves.
_REFUSALS: dict[str, tuple[int, str, str]] = {
    "tok_decline": (402, "card_declined", "The card was declined."),
    "tok_insufficient": (402, "insufficient_funds", "The card has insufficient funds."),
    "tok_invalid": (400, "invalid_payment_token", "The payment token is not valid."),
}


class AuthStatus(StrEnum):
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"  # captured, then refunded in full


@dataclass
class Authorization:
    id: str
    order_id: str
    amount: int
    currency: str
    idempotency_key: str | None
    status: AuthStatus = AuthStatus.AUTHORIZED
    amount_captured: int = 0
    amount_refunded: int = 0
    void_idempotency_key: str | None = None

    def view(self) -> dict[str, object]:
        return {"object": "authorization", **asdict(self), "status": str(self.status)}


@dataclass(frozen=True)
class Capture:
    id: str
    authorization_id: str
    order_id: str
    amount: int
    currency: str
    idempotency_key: str | None

    def view(self) -> dict[str, object]:
        return {"object": "capture", **asdict(self)}


@dataclass(frozen=True)
class Refund:
    id: str
    authorization_id: str
    order_id: str
    amount: int
    currency: str
    idempotency_key: str | None
    status: str = "succeeded"

    def view(self) -> dict[str, object]:
        return {"object": "refund", **asdict(self)}


# What one change left: ("authorization" | "capture" | "refund", the record's fields).
Change = tuple[str, dict[str, Any]]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class Ledger:
    def __init__(self) -> None:
        self.authorizations: dict[str, Authorization] = {}
        self.captures: list[Capture] = []
        self.refunds: list[Refund] = []
        # What changed since the caller last took them (payment_provider.journal).
        self.changes: list[Change] = []

    def take_changes(self) -> list[Change]:
        taken, self.changes = self.changes, []
        return taken

    def apply(self, kind: str, record: dict[str, Any]) -> None:
        """A recorded change, read back (the latest state of an authorization wins)."""
        if kind == "authorization":
            auth = Authorization(**record)
            auth.status = AuthStatus(auth.status)
            self.authorizations[auth.id] = auth
        elif kind == "capture":
            self.captures.append(Capture(**record))
        elif kind == "refund":
            self.refunds.append(Refund(**record))
        else:
            raise ValueError(f"unknown change {kind!r} in the journal")

    def _changed(self, kind: str, record: Authorization | Capture | Refund) -> None:
        self.changes.append((kind, asdict(record)))

    def authorize(self, request: AuthorizeRequest, key: str | None) -> Authorization:
        refusal = _REFUSALS.get(request.payment_token)
        if refusal is not None:
            raise ProviderError(*refusal, param="payment_token")
        auth = Authorization(
            id=_new_id("auth"),
            order_id=request.order_id,
            amount=request.amount,
            currency=request.currency,
            idempotency_key=key,
        )
        self.authorizations[auth.id] = auth
        self._changed("authorization", auth)
        return auth

    def get(self, authorization_id: str) -> Authorization:
        auth = self.authorizations.get(authorization_id)
        if auth is None:
            raise ProviderError(
                404, "resource_missing", f"no authorization {authorization_id}", "authorization_id"
            )
        return auth

    def capture(self, authorization_id: str, amount: int | None, key: str | None) -> Authorization:
        auth = self.get(authorization_id)
        _refuse_unless(auth, AuthStatus.AUTHORIZED, "capture")
        amount = auth.amount if amount is None else amount
        if amount > auth.amount:
            raise ProviderError(
                400,
                "amount_too_large",
                f"capture {amount} exceeds authorized {auth.amount}",
                "amount",
            )
        auth.status = AuthStatus.CAPTURED
        auth.amount_captured = amount
        capture = Capture(_new_id("cap"), auth.id, auth.order_id, amount, auth.currency, key)
        self.captures.append(capture)
        self._changed("authorization", auth)
        self._changed("capture", capture)
        return auth

    def void(self, authorization_id: str, key: str | None) -> Authorization:
        auth = self.get(authorization_id)
        _refuse_unless(auth, AuthStatus.AUTHORIZED, "void")
        auth.status = AuthStatus.VOIDED
        auth.void_idempotency_key = key
        self._changed("authorization", auth)
        return auth

    def refund(self, request: RefundRequest, key: str | None) -> Refund:
        auth = self.get(request.authorization_id)
        if auth.status in (AuthStatus.AUTHORIZED, AuthStatus.VOIDED):
            raise ProviderError(
                409, "not_captured", f"authorization {auth.id} is {auth.status}, not captured"
            )
        refundable = auth.amount_captured - auth.amount_refunded
        if request.amount > refundable:
            message = f"refund {request.amount} exceeds refundable {refundable}"
            raise ProviderError(400, "amount_too_large", message, "amount")
        auth.amount_refunded += request.amount
        if auth.amount_refunded == auth.amount_captured:
            auth.status = AuthStatus.REFUNDED
        refund = Refund(_new_id("re"), auth.id, auth.order_id, request.amount, auth.currency, key)
        self.refunds.append(refund)
        self._changed("authorization", auth)
        self._changed("refund", refund)
        return refund

    def for_order(self, order_id: str) -> dict[str, object]:
        auths = [a.view() for a in self.authorizations.values() if a.order_id == order_id]
        return {
            "order_id": order_id,
            "authorizations": auths,
            "captures": [c.view() for c in self.captures if c.order_id == order_id],
            "refunds": [r.view() for r in self.refunds if r.order_id == order_id],
        }


def _refuse_unless(auth: Authorization, expected: AuthStatus, action: str) -> None:
    """409 typed by the state in the way: `authorization_voided` or `already_captured`."""
    if auth.status == expected:
        return
    type_ = "authorization_voided" if auth.status == AuthStatus.VOIDED else "already_captured"
    raise ProviderError(409, type_, f"cannot {action} authorization {auth.id}: {auth.status}")
