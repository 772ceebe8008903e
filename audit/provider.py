"""The payment provider's books against ours: money the provider holds that no order keeps.

For each order in scope, what the provider lists under the order id must
match the order's end: a CANCELLED order leaves no authorization held and no
capture unrefunded (a request the provider applied after our refund looked
shows up here); a CONFIRMED order's captures sum to what we recorded as paid
by card, less what its returns refunded, and the provider's refunds of it are
those its returns recorded, each once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from activities.provider_client import PaymentProviderClient
from audit.checks import Scope, Violation

_ORDERS = """
    SELECT o.order_id, o.status, coalesce(p.amount - p.refunded_amount, 0) AS card_paid,
           (SELECT coalesce(sum(r.card_amount), 0) FROM payments.return_refunds r
            WHERE r.order_id = o.order_id) AS returned_by_card
    FROM orders.orders o
    LEFT JOIN payments.payments p ON p.order_id = o.order_id AND p.status = 'CAPTURED'
    WHERE o.status IN ('CONFIRMED', 'CANCELLED')
      AND (CAST(:since AS timestamptz) IS NULL OR o.created_at >= CAST(:since AS timestamptz))
"""


async def provider_violations(
    conn: AsyncConnection, provider: PaymentProviderClient, scope: Scope
) -> list[Violation]:
    found: list[Violation] = []
    rows = await conn.execute(text(_ORDERS), {"since": scope.since})
    for order_id, status, card_paid, returned_by_card in rows:
        books = await provider.payments_for(order_id)
        found += _mismatches(str(order_id), str(status), int(card_paid), books)
        if status == "CONFIRMED":
            found += _return_refunds(str(order_id), int(returned_by_card), books)
    return found


def _mismatches(
    order_id: str, status: str, card_paid: int, books: dict[str, Any]
) -> list[Violation]:
    auths = books.get("authorizations", [])
    if status == "CANCELLED":
        return [
            Violation(
                "provider-money",
                order_id,
                f"cancelled, but {a['id']} is {a['status']}"
                f" ({a['amount_captured'] - a['amount_refunded']} kept)",
            )
            for a in auths
            if a["status"] == "authorized" or a["amount_captured"] > a["amount_refunded"]
        ]
    captured = sum(int(a["amount_captured"]) - int(a["amount_refunded"]) for a in auths)
    if captured != card_paid:
        detail = f"confirmed with {card_paid} paid by card, the provider holds {captured}"
        return [Violation("provider-money", order_id, detail)]
    return []


def _return_refunds(order_id: str, recorded: int, books: dict[str, Any]) -> list[Violation]:
    """A confirmed order's refunds at the provider are its returns' card refunds, once each."""
    refunded = sum(int(r["amount"]) for r in books.get("refunds", []))
    if refunded == recorded:
        return []
    detail = f"its returns refunded {recorded} by card, the provider refunded {refunded}"
    return [Violation("provider-return-refund", order_id, detail)]
