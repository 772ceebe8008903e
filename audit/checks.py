"""The invariants every order must satisfy, checked in SQL across the services' schemas.

Each check returns violations, one per offending order (or wallet, or branch),
each naming what is wrong. A scope limits the orders looked at: those created
at or after `since` (none: all).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from wiring.services import SERVICES


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str  # an order id, a customer id, a branch gid
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


@dataclass(frozen=True)
class Scope:
    since: datetime | None = None
    # Open things (prepared branches, holds, pending orders) younger than this are in flight.
    grace: timedelta = timedelta(minutes=10)


_IN_SCOPE = "(CAST(:since AS timestamptz) IS NULL OR o.created_at >= CAST(:since AS timestamptz))"

# One row per order and problem: (order id, what is wrong).
_ORDER_CHECKS: dict[str, str] = {
    "confirmed-stock": f"""
        SELECT o.order_id, 'line ' || l.sku || ' x' || l.quantity || ' is not held by a '
               || 'reservation (found ' || coalesce(r.status || ' x' || r.quantity, 'none') || ')'
        FROM orders.orders o
        JOIN orders.order_lines l ON l.order_id = o.order_id
        LEFT JOIN inventory.reservations r ON r.order_id = o.order_id AND r.sku = l.sku
        WHERE o.status = 'CONFIRMED' AND {_IN_SCOPE}
          AND (r.status IS DISTINCT FROM 'RESERVED'
               OR r.quantity <> (SELECT sum(quantity) FROM orders.order_lines x
                                 WHERE x.order_id = o.order_id AND x.sku = l.sku))
    """,
    "confirmed-shipment": f"""
        SELECT o.order_id, 'expected one CREATED shipment, found '
               || coalesce(max(s.status), 'none')
        FROM orders.orders o LEFT JOIN shipping.shipments s ON s.order_id = o.order_id
        WHERE o.status = 'CONFIRMED' AND {_IN_SCOPE}
        GROUP BY o.order_id HAVING count(s.*) <> 1 OR max(s.status) <> 'CREATED'
    """,
    "confirmed-money": f"""
        SELECT o.order_id, 'total ' || o.total || ' but captured ' || coalesce(p.amount, 0)
               || ' by card and ' || coalesce(-w.net, 0) || ' from the wallet'
        FROM orders.orders o
        LEFT JOIN payments.payments p ON p.order_id = o.order_id AND p.status = 'CAPTURED'
        LEFT JOIN (SELECT order_id, sum(amount) AS net FROM payments.wallet_entries
                   WHERE order_id IS NOT NULL GROUP BY order_id) w ON w.order_id = o.order_id
        WHERE o.status = 'CONFIRMED' AND {_IN_SCOPE}
          AND coalesce(p.amount, 0) - coalesce(w.net, 0) <> o.total
    """,
    "cancelled-stock": f"""
        SELECT o.order_id, 'still holds ' || r.quantity || ' x ' || r.sku
        FROM orders.orders o JOIN inventory.reservations r ON r.order_id = o.order_id
        WHERE o.status = 'CANCELLED' AND r.status = 'RESERVED' AND {_IN_SCOPE}
    """,
    "cancelled-shipment": f"""
        SELECT o.order_id, 'shipment ' || s.tracking_number || ' is still CREATED'
        FROM orders.orders o JOIN shipping.shipments s ON s.order_id = o.order_id
        WHERE o.status = 'CANCELLED' AND s.status = 'CREATED' AND {_IN_SCOPE}
    """,
    "cancelled-money": f"""
        SELECT o.order_id, 'kept ' || (p.amount - p.refunded_amount) || ' of a card payment'
        FROM orders.orders o JOIN payments.payments p ON p.order_id = o.order_id
        WHERE o.status = 'CANCELLED' AND p.amount <> p.refunded_amount AND {_IN_SCOPE}
        UNION ALL
        SELECT o.order_id, 'wallet entries net ' || sum(w.amount) || ', not 0'
        FROM orders.orders o JOIN payments.wallet_entries w ON w.order_id = o.order_id
        WHERE o.status = 'CANCELLED' AND {_IN_SCOPE}
        GROUP BY o.order_id HAVING sum(w.amount) <> 0
    """,
    # The orders service's sweep cancels these at their deadline; one left open
    # well past it means no sweep runs (no orders service in `python -m choreography`).
    "overdue-order": f"""
        SELECT o.order_id, 'choreographed, PENDING ' || date_trunc('second', now() - o.deadline_at)
               || ' past its deadline: is the orders service''s timeout sweep running?'
        FROM orders.orders o
        WHERE o.saga_mode = 'choreography' AND o.status = 'PENDING'
          AND o.deadline_at < now() - CAST(:grace AS interval) AND {_IN_SCOPE}
    """,
    "stuck-order": f"""
        SELECT o.order_id, 'PENDING since ' || o.created_at
        FROM orders.orders o
        WHERE o.status = 'PENDING' AND o.created_at < now() - CAST(:grace AS interval)
          AND {_IN_SCOPE}
    """,
}

# Returns (docs/returns.md): never more back than was bought; a CLOSED return's
# every line restocked once and its value refunded once, card and wallet; a
# CANCELLED return leaves nothing on the shelf and nothing refunded.
_RETURN_CHECKS: dict[str, str] = {
    "return-exceeds-order": f"""
        SELECT o.order_id, 'returned ' || sum(l.quantity) || ' x ' || l.sku || ', bought '
               || coalesce((SELECT sum(b.quantity) FROM orders.order_lines b
                            WHERE b.order_id = o.order_id AND b.sku = l.sku), 0)
        FROM orders.orders o
        JOIN orders.returns t ON t.order_id = o.order_id AND t.status <> 'CANCELLED'
        JOIN orders.return_lines l ON l.return_id = t.return_id
        WHERE {_IN_SCOPE}
        GROUP BY o.order_id, l.sku
        HAVING sum(l.quantity) > coalesce((SELECT sum(b.quantity) FROM orders.order_lines b
                                           WHERE b.order_id = o.order_id AND b.sku = l.sku), 0)
    """,
    "return-restock": f"""
        SELECT o.order_id, 'return ' || t.return_id || ' is ' || t.status || ': line '
               || coalesce(l.sku, s.sku) || ' x' || coalesce(l.quantity, 0) || ' restocked '
               || coalesce(s.status || ' x' || s.quantity, 'never')
        FROM orders.orders o
        JOIN orders.returns t ON t.order_id = o.order_id AND t.status <> 'OPEN'
        JOIN orders.return_lines l ON l.return_id = t.return_id
        FULL JOIN inventory.restocks s ON s.return_id = l.return_id AND s.sku = l.sku
        WHERE {_IN_SCOPE}
          AND CASE t.status
                WHEN 'CLOSED' THEN s.status IS DISTINCT FROM 'RESTOCKED'
                                   OR s.quantity IS DISTINCT FROM l.quantity
                ELSE s.status = 'RESTOCKED' END
    """,
    "return-refund": f"""
        SELECT o.order_id, 'return ' || t.return_id || ' is ' || t.status || ', worth '
               || t.value || ': refunded ' || coalesce(f.card_amount || ' by card and '
               || f.store_credit_amount || ' to the wallet', 'nothing')
               || CASE WHEN f.store_credit_amount > 0 AND e.entry_id IS NULL
                       THEN ' (no wallet credit found)' ELSE '' END
        FROM orders.orders o
        JOIN orders.returns t ON t.order_id = o.order_id AND t.status <> 'OPEN'
        LEFT JOIN payments.return_refunds f ON f.return_id = t.return_id
        LEFT JOIN payments.wallet_events e
               ON e.entry_id = f.wallet_entry_id AND e.event_type = 'Credited'
              AND e.amount = f.store_credit_amount
        WHERE {_IN_SCOPE}
          AND CASE t.status
                WHEN 'CLOSED' THEN f.return_id IS NULL
                     OR f.card_amount <> t.card_refunded
                     OR f.store_credit_amount <> t.store_credit_refunded
                     OR f.card_amount + f.store_credit_amount <> t.value
                     OR (f.store_credit_amount > 0 AND e.entry_id IS NULL)
                ELSE f.return_id IS NOT NULL END
    """,
}
_ORDER_CHECKS.update(_RETURN_CHECKS)

# Every event must reach the broker: none dead-lettered, none left behind. An
# order's events are named by the order; others (a wallet top-up) by their
# aggregate, and scoped by their own creation time.
_OUTBOX_CHECK = " UNION ALL ".join(
    f"""
        SELECT e.aggregate_id, '{schema} event ' || e.event_type || ' ' || e.event_id || ' is '
               || e.status || CASE WHEN e.status = 'FAILED' THEN ': ' || coalesce(e.last_error, '')
                                   ELSE ' since ' || e.created_at END
        FROM {schema}.outbox e LEFT JOIN orders.orders o ON o.order_id = e.aggregate_id
        WHERE (CAST(:since AS timestamptz) IS NULL
               OR coalesce(o.created_at, e.created_at) >= CAST(:since AS timestamptz))
          AND (e.status = 'FAILED'
               OR (e.status = 'PENDING' AND e.created_at < now() - CAST(:grace AS interval)))
    """
    for schema in SERVICES
)
_ORDER_CHECKS["unpublished-event"] = _OUTBOX_CHECK

# Projected events: every published event of an order reaches the order-history
# read model (once: its key is the event id). Events published within the grace
# period may still be on their way to the consumer.
_READ_MODEL_CHECK = " UNION ALL ".join(
    f"""
        SELECT o.order_id, '{schema} event ' || e.event_type || ' ' || e.event_id
               || ' published ' || e.published_at || ' is not in the order history'
        FROM orders.orders o JOIN {schema}.outbox e ON e.aggregate_id = o.order_id
        WHERE {_IN_SCOPE} AND e.status = 'PUBLISHED'
          AND e.published_at < now() - CAST(:grace AS interval)
          AND NOT EXISTS (SELECT 1 FROM readmodels.order_history h
                          WHERE h.event_id = e.event_id)
    """
    for schema in SERVICES
)

_GLOBAL_CHECKS: dict[str, str] = {
    # Units are neither made nor lost: what came in, less what reservations
    # hold, is on the shelf. Prepared (uncommitted) XA branches are invisible
    # on both sides of the equation.
    "stock-conservation": """
        SELECT p.sku, 'received ' || p.stock_received || ', reserved '
               || coalesce(sum(r.quantity), 0) || ', but stock is ' || p.stock
        FROM inventory.products p
        LEFT JOIN inventory.reservations r ON r.sku = p.sku AND r.status = 'RESERVED'
        GROUP BY p.sku, p.stock_received, p.stock
        HAVING p.stock_received - coalesce(sum(r.quantity), 0) <> p.stock OR p.stock < 0
    """,
    "negative-balance": """
        SELECT customer_id, 'wallet balance ' || balance FROM payments.wallets WHERE balance < 0
    """,
    # The balance is the sum of its ledger: nothing moved money around it.
    "wallet-ledger": """
        SELECT w.customer_id, 'balance ' || w.balance || ' but entries sum to '
               || coalesce(sum(e.amount), 0)
        FROM payments.wallets w LEFT JOIN payments.wallet_entries e USING (customer_id)
        GROUP BY w.customer_id, w.balance HAVING w.balance <> coalesce(sum(e.amount), 0)
    """,
    "open-branch": """
        SELECT gid, 'prepared since ' || prepared
        FROM pg_prepared_xacts
        WHERE gid LIKE 'tpc:%' AND prepared < now() - CAST(:grace AS interval)
    """,
    # TRYING too: a try cut short after authorizing may hold money.
    "open-hold": """
        SELECT tx_id, 'card hold ' || status || ' since ' || created_at
        FROM payments.card_holds
        WHERE status IN ('TRYING', 'HELD') AND created_at < now() - CAST(:grace AS interval)
    """,
}


async def database_violations(
    conn: AsyncConnection, scope: Scope, read_model: bool = True
) -> list[Violation]:
    """`read_model=False` where no order-history consumer runs (most tests)."""
    params = {"since": scope.since, "grace": scope.grace}
    checks = {**_ORDER_CHECKS, **_GLOBAL_CHECKS}
    if read_model:
        checks["read-model"] = _READ_MODEL_CHECK
    found: list[Violation] = []
    for check, sql in checks.items():
        rows = await conn.execute(text(sql), params)
        found += [Violation(check, str(subject), str(detail)) for subject, detail in rows]
    return found
