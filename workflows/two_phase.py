"""TwoPhaseCommit: a durable 2PC coordinator any saga can run as a child.

Phase 1 asks every participant to prepare, each within the deadline: in
parallel, except that participants locking shared rows go in their lock
rank's order (ParticipantSpec.lock_rank); all YES → COMMIT; any NO or no
answer in time → ABORT. The decision
is written to the coordinator log (first writer wins) before phase 2, and
phase 2 tells every participant, retrying until each acknowledges. The
decision never changes.

Classic 2PC blocks when its coordinator dies between the phases; this one is a
Temporal workflow, so its decision and progress survive any crash of the
process running it, and it finishes the protocol when a worker returns.
Cancellation is deferred: a coordinator always ends with a decision.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from domain.activities import TwoPhaseAct
    from domain.bulkheads import queue_for
    from domain.saga import Runs
    from domain.two_phase import (
        BranchAck,
        BranchCall,
        Decision,
        DecisionRecord,
        ParticipantSpec,
        TwoPhaseInput,
        TwoPhaseOutcome,
        Vote,
        VoteReply,
        branch_gid,
    )
    from workflows.compensation import shielded
    from workflows.metrics import count
    from workflows.steps import LOCAL_STEPS, run_step

R = TypeVar("R")

# Retries inside the prepare deadline: a brief fault is no reason to abort.
PREPARE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
)
# Phase 2 and the log never give up: a decided transaction must be carried out.
FOREVER = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
PHASE_TWO_TIMEOUT = timedelta(seconds=15)
# Added while coordinators were running: those replay preparing all at once
# (their histories have no marker); new ones prepare in lock rank order.
PREPARE_IN_LOCK_ORDER = "prepare-in-lock-order"
NOT_ASKED = VoteReply(vote=Vote.NO, reason="not asked: a participant before it did not vote yes")
DEADLINE_PASSED = VoteReply(vote=Vote.TIMEOUT, reason="not asked: the prepare deadline passed")


@workflow.defn(name="TwoPhaseCommit")
class TwoPhaseCommit:
    def __init__(self) -> None:
        self._outcome: TwoPhaseOutcome | None = None

    @workflow.run
    async def run(self, tx: TwoPhaseInput) -> TwoPhaseOutcome:
        self._outcome = TwoPhaseOutcome(tx_id=tx.tx_id)
        return await shielded(self._protocol(tx), "running two-phase commit")

    @workflow.query(name="outcome")
    def outcome(self) -> TwoPhaseOutcome:
        assert self._outcome is not None
        return self._outcome

    async def _protocol(self, tx: TwoPhaseInput) -> TwoPhaseOutcome:
        outcome = self.outcome()
        self._show()
        replies = await self._prepare_all(tx)
        for participant, reply in zip(tx.participants, replies, strict=True):
            outcome.votes[participant.name] = reply.vote
            if reply.refusal:
                outcome.refusals[participant.name] = reply.refusal
            if reply.reason:
                outcome.reasons[participant.name] = reply.reason
        wanted = (
            Decision.COMMIT if all(reply.vote is Vote.YES for reply in replies) else Decision.ABORT
        )
        logged = await self._run(
            TwoPhaseAct.RECORD_DECISION,
            DecisionRecord(
                tx_id=tx.tx_id,
                decision=wanted,
                participants=[p.name for p in tx.participants],
                votes=dict(outcome.votes),
            ),
            DecisionRecord,
            Runs.LOCAL,
            f"Log decision {wanted}",
            start_to_close_timeout=PHASE_TWO_TIMEOUT,
            retry_policy=FOREVER,
        )
        # The log is the authority: if recovery logged first, follow it.
        outcome.decision, outcome.phase = logged.decision, logged.decision.lower()
        count("two_phase_decisions", "2PC decisions logged", decision=logged.decision.value)
        self._show()
        await asyncio.gather(*(self._finish(tx, p, logged.decision) for p in tx.participants))
        await self._run(
            TwoPhaseAct.COMPLETE_TRANSACTION,
            tx.tx_id,
            type(None),
            Runs.LOCAL,
            "Mark transaction complete",
            start_to_close_timeout=PHASE_TWO_TIMEOUT,
            retry_policy=FOREVER,
        )
        outcome.phase = "done"
        self._show()
        return outcome

    async def _prepare_all(self, tx: TwoPhaseInput) -> list[VoteReply]:
        """Every participant's vote, in the order of tx.participants.

        In lock order: the unranked start at once; the ranked go rank after
        rank, all within the one deadline. Once any vote is not YES the order
        is lost, so the ranks after it are not asked (their abort leaves a
        tombstone) rather than lock rows for nothing.
        """
        participants = tx.participants
        if not self._prepares_in_lock_order():
            return list(await asyncio.gather(*(self._prepare(tx, p) for p in participants)))
        until = workflow.now() + timedelta(seconds=tx.prepare_timeout_s)
        unranked, groups = lock_order(participants)
        asked = {
            n: asyncio.ensure_future(self._prepare(tx, participants[n], until)) for n in unranked
        }
        replies: dict[int, VoteReply] = {}

        def lost() -> bool:
            answered = [task.result() for task in asked.values() if task.done()]
            return any(reply.vote is not Vote.YES for reply in [*answered, *replies.values()])

        for group in groups:
            if lost():
                for n in group:
                    replies[n] = self._record(participants[n], NOT_ASKED)
                continue
            asking = (self._prepare(tx, participants[n], until) for n in group)
            answers = await asyncio.gather(*asking)
            replies.update(zip(group, answers, strict=True))
        for n, task in asked.items():
            replies[n] = await task
        return [replies[n] for n in range(len(participants))]

    def _record(self, p: ParticipantSpec, reply: VoteReply) -> VoteReply:
        self.outcome().votes[p.name] = reply.vote
        self._show()
        return reply

    def _prepares_in_lock_order(self) -> bool:
        return workflow.patched(PREPARE_IN_LOCK_ORDER)

    async def _prepare(
        self, tx: TwoPhaseInput, p: ParticipantSpec, until: datetime | None = None
    ) -> VoteReply:
        """`p`'s vote, asked within the prepare timeout (or what is left of it before `until`)."""
        deadline = timedelta(seconds=tx.prepare_timeout_s)
        if until is not None:
            deadline = until - workflow.now()
            if deadline <= timedelta(0):
                return self._record(p, DEADLINE_PASSED)
        try:
            reply = await self._run(
                p.prepare,
                BranchCall(tx_id=tx.tx_id, gid=branch_gid(tx.tx_id, p.name), payload=p.payload),
                VoteReply,
                p.runs,
                f"Prepare {p.name} ({p.kind})",
                schedule_to_close_timeout=deadline,
                retry_policy=PREPARE_RETRY,
            )
        except FailureError as err:
            # A local prepare's failure replays as its bare cause (the marker
            # holds it unwrapped), and a refusal of one arrives so even at first.
            cause = err.cause if isinstance(err, ActivityError) else err
            if isinstance(cause, TimeoutError):
                reply = VoteReply(vote=Vote.TIMEOUT, reason=f"no answer within {deadline}")
            else:
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                reply = VoteReply(vote=Vote.NO, reason=message)
        return self._record(p, reply)

    async def _finish(self, tx: TwoPhaseInput, p: ParticipantSpec, decision: Decision) -> None:
        activity = p.commit if decision is Decision.COMMIT else p.abort
        await self._run(
            activity,
            BranchCall(tx_id=tx.tx_id, gid=branch_gid(tx.tx_id, p.name), payload=p.payload),
            BranchAck,
            p.runs,
            f"{decision.value.capitalize()} {p.name}",
            start_to_close_timeout=PHASE_TWO_TIMEOUT,
            retry_policy=FOREVER,
        )
        # An operator looking at a stuck phase 2 sees who is still to answer.
        self.outcome().acknowledged.append(p.name)
        self._show()

    async def _run(
        self, activity: str, arg: Any, result: type[R], runs: Runs, summary: str, **timing: Any
    ) -> R:
        """A LOCAL participant's or the log's call as a local activity on this worker
        (for coordinators begun after LOCAL_STEPS); anything else on its bulkhead's queue."""
        return await run_step(
            activity,
            arg,
            result,
            summary,
            local=runs is Runs.LOCAL and self._local_steps(),
            task_queue=queue_for(activity, workflow.info().task_queue),
            **timing,
        )

    def _local_steps(self) -> bool:
        return workflow.patched(LOCAL_STEPS)

    def _show(self) -> None:
        outcome = self.outcome()
        rows = "\n".join(
            f"| {name} | {vote.value} | {'yes' if name in outcome.acknowledged else ''} |"
            for name, vote in outcome.votes.items()
        )
        workflow.set_current_details(
            f"**2PC {outcome.tx_id}**: phase *{outcome.phase}*, decision "
            f"*{outcome.decision.value if outcome.decision else 'pending'}*\n\n"
            f"| participant | vote | carried out |\n| --- | --- | --- |\n{rows}"
        )


def lock_order(participants: list[ParticipantSpec]) -> tuple[list[int], list[list[int]]]:
    """Positions of the unranked participants, and of the ranked ones grouped by
    ascending rank: the groups prepare one after another, each in parallel."""
    unranked = [n for n, p in enumerate(participants) if p.lock_rank is None]
    ranks = sorted({p.lock_rank for p in participants if p.lock_rank is not None})
    return unranked, [[n for n, p in enumerate(participants) if p.lock_rank == r] for r in ranks]
