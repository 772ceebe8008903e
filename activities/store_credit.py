"""Store credit: the wallet as an XA participant, its saga refund, and top-ups."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from activities._common import context, stable_id
from db.engine import SessionFactory
from db.tables import wallet_entries, wallets
from db.unit_of_work import Step, StepContext, apply_once, event_row, insert_events
from db.xa import XaBranches
from domain.activities import RefundStoreCredit, StoreCreditRefunded, TwoPhaseAct
from domain.errors import ErrorType
from domain.two_phase import BranchAck, BranchCall, Vote, VoteReply

DEFAULT_CURRENCY = "EUR"


class WalletCredited(BaseModel):
    customer_id: str
    amount: int
    balance: int
    currency: str
    request_hash: str = ""


class StoreCreditParticipant:
    def __init__(self, engine: AsyncEngine, lock_timeout_ms: int = 5000) -> None:
        self._branches = XaBranches(engine, "payments", lock_timeout_ms)

    @activity.defn(name=TwoPhaseAct.PREPARE_STORE_CREDIT)
    async def prepare_store_credit(self, call: BranchCall) -> VoteReply:
        customer_id = str(call.payload["customer_id"])
        amount = int(call.payload["amount"])
        order_id = str(call.payload["order_id"])

        async def debit(conn: AsyncConnection) -> VoteReply | None:
            # Conditional update: the balance cannot be spent twice, even by
            # two orders preparing at once; CHECK (balance >= 0) stands behind it.
            debited = await conn.execute(
                update(wallets)
                .where(wallets.c.customer_id == customer_id, wallets.c.balance >= amount)
                .values(balance=wallets.c.balance - amount, updated_at=func.now())
                .returning(wallets.c.balance)
            )
            if debited.first() is None:
                return VoteReply(
                    vote=Vote.NO,
                    reason=f"insufficient store credit for {amount}",
                    refusal=ErrorType.INSUFFICIENT_CREDIT,
                )
            await conn.execute(
                wallet_entries.insert().values(
                    entry_id=stable_id(call.gid),
                    customer_id=customer_id,
                    amount=-amount,
                    kind="DEBIT",
                    order_id=order_id,
                )
            )
            event = event_row(
                StepContext("payments", call.gid, call.tx_id),
                "wallet",
                customer_id,
                "StoreCreditDebited",
                {"order_id": order_id, "customer_id": customer_id, "amount": amount},
            )
            await insert_events(conn, "payments", [event], notify=False)
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

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

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
                await _credit(step, customer_id, -net, "REFUND", cmd.order_id)
                refunded += -net
            return StoreCreditRefunded(refunded_amount=refunded)

        return await apply_once(
            self._sessions, context("payments", cmd), change, StoreCreditRefunded
        )


async def top_up(
    sessions: SessionFactory, customer_id: str, amount: int, key: str, request_hash: str
) -> WalletCredited:
    """Add store credit; the same key returns the first answer (compare its request_hash)."""

    async def change(step: Step) -> WalletCredited:
        balance, currency = await _credit(step, customer_id, amount, "CREDIT", None)
        return WalletCredited(
            customer_id=customer_id,
            amount=amount,
            balance=balance,
            currency=currency,
            request_hash=request_hash,
        )

    ctx = StepContext("payments", f"wallet-credit:{customer_id}:{key}", f"wallet-{customer_id}")
    return await apply_once(sessions, ctx, change, WalletCredited)


async def _credit(
    step: Step, customer_id: str, amount: int, kind: str, order_id: str | None
) -> tuple[int, str]:
    row = (
        await step.session.execute(
            insert(wallets)
            .values(customer_id=customer_id, balance=amount, currency=DEFAULT_CURRENCY)
            .on_conflict_do_update(
                index_elements=[wallets.c.customer_id],
                set_={"balance": wallets.c.balance + amount, "updated_at": func.now()},
            )
            .returning(wallets.c.balance, wallets.c.currency)
        )
    ).one()
    await step.session.execute(
        wallet_entries.insert().values(
            entry_id=stable_id(step.context.idempotency_key, kind),
            customer_id=customer_id,
            amount=amount,
            kind=kind,
            order_id=order_id,
        )
    )
    event = "StoreCreditRefunded" if kind == "REFUND" else "StoreCreditAdded"
    payload = {"customer_id": customer_id, "amount": amount, "order_id": order_id}
    step.record("wallet", customer_id, event, payload)
    return int(row.balance), str(row.currency)
