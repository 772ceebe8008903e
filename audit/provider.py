"""The payment provider's books against ours: money the provider holds that no order keeps.

For each order in scope, what the provider lists under the order id must
match the order's end: a CANCELLED order leaves no authorization held and no
capture unrefunded (a request the provider applied after our refund looked
shows up here); a CONFIRMED order's captures sum to what we recorded as paid
by card.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from activities.provider_client import PaymentProviderClient
from audit.checks import Scope, Violation

_ORDERS = """
    SELECT o.order_id, o.status, coalesce(p.amount, 0) AS card_paid
    FROM orders.orders o
    LEFT JOIN payments.payments p ON p.order_id = o.order_id AND p.status = 'CAPTURED'
    WHERE o.status IN ('CONFIRMED', 'CANCELLED')
      AND (CAST(:since AS timestamptz) IS NULL OR o.created_at >= CAST(:since AS timestamptz))
"""


async def provider_violations(
    conn: AsyncConnection, provider: PaymentProviderClient, scope: Scope
) -> list[Violation]:
    found: list[Violation] = []
    for order_id, status, card_paid in await conn.execute(text(_ORDERS), {"since": scope.since}):
        books = await provider.payments_for(order_id)
        found += _mismatches(str(order_id), str(status), int(card_paid), books)
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
