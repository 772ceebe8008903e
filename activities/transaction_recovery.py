"""The saga's way out when its 2PC coordinator failed or was terminated.

The saga cannot wait for the periodic sweep: it must know the outcome to
compensate or go on. This activity does for one transaction what the sweep
does for all: the logged decision, or ABORT logged first (presumed abort), then
that decision carried out on every participant — including those that never
prepared, which get a tombstone so a late prepare votes no.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.card_hold import CardHoldParticipant
from domain.activities import TwoPhaseAct
from domain.two_phase import ResolveTransaction, TransactionResolved
from recovery.sweep import complete_if_settled, logged_or_abort, resolve_branch


class TransactionRecovery:
    def __init__(self, engine: AsyncEngine, card: CardHoldParticipant) -> None:
        self._engine = engine
        self._card = card

    @activity.defn(name=TwoPhaseAct.RESOLVE_TRANSACTION)
    async def resolve_transaction(self, cmd: ResolveTransaction) -> TransactionResolved:
        decision = await logged_or_abort(self._engine, cmd.tx_id, cmd.participants)
        for participant in cmd.participants:
            await resolve_branch(self._engine, self._card, cmd.tx_id, participant, decision)
        # The log says it is done, as the coordinator's last step would have.
        await complete_if_settled(self._engine, cmd.tx_id)
        activity.logger.warning("resolved 2PC %s without its coordinator: %s", cmd.tx_id, decision)
        return TransactionResolved(tx_id=cmd.tx_id, decision=decision)
