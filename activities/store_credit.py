"""Store credit: the wallet as an XA participant, its saga refund, and top-ups.

Each writes to the wallet's event stream (db.wallet_store) in its own transaction.
"""

from __future__ import annotations

import functools

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from activities._common import context
from db.engine import SessionFactory
from db.tables import service_tables, wallet_entries, xa_branches
from db.unit_of_work import Step, StepContext, apply_once, event_row, insert_events
from db.wallet_store import DEFAULT_CURRENCY, WalletStore
from db.xa import XaBranches
from domain import wallet
from domain.activities import RefundStoreCredit, StoreCreditRefunded, TwoPhaseAct
from domain.errors import ErrorType
from domain.two_phase import BranchAck, BranchCall, Vote, VoteReply
from wiring.services import XA_SCHEMAS

# The wallet's schema: the store-credit participant's branches and events.
SCHEMA = XA_SCHEMAS["store_credit"]


class WalletCredited(BaseModel):
    customer_id: str
    amount: int
    balance: int
    currency: str
    request_hash: str = ""


class StoreCreditParticipant:
    def __init__(
        self, engine: AsyncEngine, lock_timeout_ms: int = 5000, store: WalletStore | None = None
    ) -> None:
        self._branches = XaBranches(engine, xa_branches[SCHEMA], lock_timeout_ms)
        self._store = store or WalletStore()

    @activity.defn(name=TwoPhaseAct.PREPARE_STORE_CREDIT)
    async def prepare_store_credit(self, call: BranchCall) -> VoteReply:
        customer_id = str(call.payload["customer_id"])
        amount = int(call.payload["amount"])
        order_id = str(call.payload["order_id"])

        async def debit(conn: AsyncConnection) -> VoteReply | None:
            # Decided on the stream's state and appended at its next version: a
            # debit decided on a balance another order spent meanwhile never lands.
            try:
                await self._store.change(
                    conn, customer_id, lambda state: wallet.debit(state, amount, call.gid, order_id)
                )
            except wallet.Overdraft as refused:
                return VoteReply(
                    vote=Vote.NO, reason=str(refused), refusal=ErrorType.INSUFFICIENT_CREDIT
                )
            event = event_row(
                StepContext(service_tables[SCHEMA], call.gid, call.tx_id),
                "wallet",
                customer_id,
                "StoreCreditDebited",
                {"order_id": order_id, "customer_id": customer_id, "amount": amount},
            )
            await insert_events(conn, service_tables[SCHEMA].outbox, [event])
            return None

        return await self._branches.prepare(call, debit)

    @activity.defn(name=TwoPhaseAct.COMMIT_STORE_CREDIT)
    async def commit_store_credit(self, call: BranchCall) -> BranchAck:
        return BranchAck(gid=call.gid, outcome=await self._branches.commit(call))

    @activity.defn(name=TwoPhaseAct.ABORT_STORE_CREDIT)
    async def abort_store_credit(self, call: BranchCall) -> BranchAck:
        return BranchAck(gid=call.gid, outcome=await self._branches.abort(call))


class StoreCreditRefunds:
    """The saga's undo of a committed debit: credit the same amount back, once."""

    def __init__(self, sessions: SessionFactory, store: WalletStore | None = None) -> None:
        self._sessions = sessions
        self._store = store or WalletStore()

    @activity.defn(name=TwoPhaseAct.REFUND_STORE_CREDIT)
    async def refund_store_credit(self, cmd: RefundStoreCredit) -> StoreCreditRefunded:
        async def change(step: Step) -> StoreCreditRefunded:
            entries = (
                await step.session.execute(
                    select(wallet_entries.c.customer_id, func.sum(wallet_entries.c.amount))
                    .where(wallet_entries.c.order_id == cmd.order_id)
                    .group_by(wallet_entries.c.customer_id)
                )
            ).all()
            refunded = 0
            for customer_id, total in entries:
                net = int(total)  # sum() of bigint is numeric: back to minor units
                if net >= 0:
                    continue  # nothing debited, or already refunded
                key = f"{step.context.idempotency_key}:{customer_id}"
                reversal = wallet.reverse_debit(-net, key, cmd.order_id)
                # A reversal needs no decision: the debit it undoes was committed.
                await self._store.change(
                    step.session, customer_id, functools.partial(_as_is, reversal)
                )
                payload = {"customer_id": customer_id, "amount": -net, "order_id": cmd.order_id}
                step.record("wallet", customer_id, "StoreCreditRefunded", payload)
                refunded += -net
            return StoreCreditRefunded(refunded_amount=refunded)

        return await apply_once(
            self._sessions, context("payments", cmd), change, StoreCreditRefunded
        )


def _as_is(events: list[wallet.WalletEvent], _: wallet.WalletState) -> list[wallet.WalletEvent]:
    return events


async def top_up(
    sessions: SessionFactory,
    customer_id: str,
    amount: int,
    key: str,
    request_hash: str,
    store: WalletStore | None = None,
) -> WalletCredited:
    """Add store credit; the same key returns the first answer (compare its request_hash)."""
    store = store or WalletStore()

    async def change(step: Step) -> WalletCredited:
        entry = step.context.idempotency_key
        state = await store.change(
            step.session, customer_id, lambda now: wallet.credit(now, amount, entry)
        )
        payload = {"customer_id": customer_id, "amount": amount, "order_id": None}
        step.record("wallet", customer_id, "StoreCreditAdded", payload)
        return WalletCredited(
            customer_id=customer_id,
            amount=amount,
            balance=state.balance,
            currency=DEFAULT_CURRENCY,
            request_hash=request_hash,
        )

    ctx = StepContext(
        service_tables[SCHEMA], f"wallet-credit:{customer_id}:{key}", f"wallet-{customer_id}"
    )
    return await apply_once(sessions, ctx, change, WalletCredited)
