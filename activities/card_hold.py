"""The card as a TCC participant at the payment provider: try = authorize (a hold
with an expiry), confirm = capture, cancel = void.

The provider holds the money; `payments.card_holds` holds the participant's
state machine, keyed by the transaction id, so calls stay idempotent and
order-tolerant: a repeated try votes as before, a cancel that arrives before
its try leaves a VOIDED tombstone that makes the late try vote no (and void
what it authorized meanwhile), and confirm and cancel never undo each other.
Provider calls use keys derived from the branch gid, so a retried call, or a
try and a cancel racing to void one authorization, meet the provider's record.

No database transaction is held open across a provider call, so the try
records its intent first: a TRYING row (order, customer, amount; never the
token), committed before it authorizes, then HELD or REFUSED. A try cut short
in between leaves TRYING, which the recovery sweep treats like HELD; whoever
cancels (the coordinator, or recovery, which knows only the transaction id)
reads the order from the row and voids what the provider lists under the
try's key. A try that finds a tombstone looks too (an earlier attempt's
request may have landed late), and so does a cancel that leaves a tombstone
naming the order (a try of the previous release authorized before recording).
A request the provider applies only after every such look is not seen here:
that is the residue the payment audit (issue 9) reconciles.

Here: the provider calls and what to do with each status. The row's moves,
each its own transaction, are activities.card_hold_rows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity

from activities._common import opened_token
from activities.card_hold_rows import CardHoldRows
from activities.provider_client import PaymentProviderClient, ProviderRefused
from activities.provider_retry import ProviderRetry
from db.engine import SessionFactory
from db.xa import ProtocolViolation
from domain.activities import TwoPhaseAct
from domain.errors import ErrorType
from domain.two_phase import BranchAck, BranchCall, Vote, VoteReply
from security.sealed import Sealer

VOTES = {"HELD": Vote.YES, "CAPTURED": Vote.YES, "VOIDED": Vote.NO, "REFUSED": Vote.NO}


def _keys(gid: str) -> tuple[str, str, str]:
    return f"{gid}:authorize", f"{gid}:capture", f"{gid}:void"


class CardHoldParticipant:
    def __init__(
        self,
        sessions: SessionFactory,
        hold_ttl: timedelta,
        provider: PaymentProviderClient,
        retry: ProviderRetry,
        sealer: Sealer,
    ) -> None:
        self._rows = CardHoldRows(sessions, hold_ttl)
        self._provider = provider
        self._retry = retry
        self._sealer = sealer

    @activity.defn(name=TwoPhaseAct.TRY_CARD_HOLD)
    async def try_card_hold(self, call: BranchCall) -> VoteReply:
        refused: ProviderRefused | None = None
        status, recorded_auth = await self._rows.start_try(call)
        if status == "TRYING":  # ours, or an earlier attempt's: same key, same authorization
            auth_id: str | None = None
            try:
                auth_id = await self._authorize(call)
            except ProviderRefused as err:
                refused = err
            status, recorded_auth = await self._rows.finish_try(call, auth_id)
        if status == "VOIDED":
            # Cancelled (or lapsed) while, or before, we authorized: release it.
            # An earlier attempt may have authorized and failed before voiding.
            voidable = recorded_auth or await self._find_authorization(
                call, str(call.payload["order_id"])
            )
            if voidable is not None:
                await self._void(call, voidable)
        return _reply(status, refused)

    @activity.defn(name=TwoPhaseAct.CONFIRM_CARD_HOLD)
    async def confirm_card_hold(self, call: BranchCall) -> BranchAck:
        hold = await self._rows.row(call.tx_id)
        status = None if hold is None else hold.status
        if status == "CAPTURED":
            return BranchAck(gid=call.gid, outcome="CAPTURED")
        if hold is None or status != "HELD":
            raise ProtocolViolation(f"hold {call.tx_id} cannot be captured: {status}")
        if hold.provider_authorization_id is not None:
            _, capture_key, _ = _keys(call.gid)
            await self._retry.undo(
                lambda: self._provider.capture(hold.provider_authorization_id, key=capture_key)
            )
        await self._rows.record_capture(call)
        return BranchAck(gid=call.gid, outcome="CAPTURED")

    @activity.defn(name=TwoPhaseAct.CANCEL_CARD_HOLD)
    async def cancel_card_hold(self, call: BranchCall) -> BranchAck:
        status, auth_id, order_id = await self._rows.record_cancel(call)
        if status == "CAPTURED":
            raise ProtocolViolation(f"hold {call.tx_id} cannot be voided: it is captured")
        if auth_id is None and order_id:
            auth_id = await self._find_authorization(call, order_id)
        if auth_id is not None:
            await self._void(call, auth_id)
        return BranchAck(gid=call.gid, outcome=str(status))

    async def _authorize(self, call: BranchCall) -> str:
        p = call.payload
        authorize_key, _, _ = _keys(call.gid)
        order_id = str(p["order_id"])
        token = opened_token(self._sealer, str(p["payment_token"]), order_id)
        auth = await self._retry.transient(
            lambda: self._provider.authorize(
                order_id=order_id,
                amount=int(p["amount"]),
                currency=str(p["currency"]),
                payment_token=token,
                key=authorize_key,
            )
        )
        return str(auth["id"])

    async def _void(self, call: BranchCall, auth_id: str) -> None:
        _, _, void_key = _keys(call.gid)

        async def void() -> None:
            try:
                await self._provider.void(auth_id, key=void_key)
            except ProviderRefused as err:
                if err.code != "authorization_voided":  # voided already: done
                    raise

        await self._retry.undo(void)

    async def _find_authorization(self, call: BranchCall, order_id: str) -> str | None:
        """An authorization a try made without recording it (it was cut short)."""
        authorize_key, _, _ = _keys(call.gid)
        held = await self._retry.undo(lambda: self._provider.payments_for(order_id))
        found = [a["id"] for a in held["authorizations"] if a["idempotency_key"] == authorize_key]
        return str(found[0]) if found else None


def _reply(status: str, refused: ProviderRefused | None) -> VoteReply:
    vote = VOTES[status]
    if vote is Vote.YES:
        return VoteReply(vote=vote)
    if status == "REFUSED":
        declined = refused is None or refused.status == 402
        return VoteReply(
            vote=vote,
            reason=refused.message if refused else "card declined",
            refusal=ErrorType.PAYMENT_DECLINED if declined else ErrorType.PAYMENT_REJECTED,
        )
    return VoteReply(vote=vote, reason="hold already voided")
