"""The coordinator's decision log: written before phase 2, read by recovery."""

from __future__ import annotations

from sqlalchemy import Update, func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from db.engine import SessionFactory
from db.tables import decisions
from domain.activities import TwoPhaseAct
from domain.two_phase import DecisionRecord


class CoordinatorLog:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=TwoPhaseAct.RECORD_DECISION)
    async def record_decision(self, record: DecisionRecord) -> DecisionRecord:
        """First writer wins: a decision, once logged, is the decision."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(decisions)
                .values(
                    tx_id=record.tx_id,
                    decision=record.decision.value,
                    participants=record.participants,
                    votes={k: v.value for k, v in record.votes.items()},
                )
                .on_conflict_do_nothing(index_elements=[decisions.c.tx_id])
            )
            row = (
                await session.execute(select(decisions).where(decisions.c.tx_id == record.tx_id))
            ).one()
        return DecisionRecord(
            tx_id=row.tx_id, decision=row.decision, participants=row.participants, votes=row.votes
        )

    @activity.defn(name=TwoPhaseAct.COMPLETE_TRANSACTION)
    async def complete_transaction(self, tx_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(completion(tx_id))


def completion(tx_id: str) -> Update:
    """The log's note that every participant carried the decision out (first time only)."""
    return (
        update(decisions)
        .where(decisions.c.tx_id == tx_id, decisions.c.completed_at.is_(None))
        .values(completed_at=func.now())
    )
