"""The recovery sweep: finish what a vanished coordinator left open.

A prepared transaction or a card hold holds rows or money until someone
decides, and so may a card try cut short after authorizing (its row still
TRYING). The coordinator normally decides; if its workflow was terminated or
lost, this sweep finds branches older than a grace period and resolves them
from the decision log: the logged decision if there is one, otherwise abort
(presumed abort), which it logs first so no coordinator can later commit.
Branches whose coordinator is still running are left to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.card_hold import CardHoldParticipant
from activities.card_hold_rows import OPEN
from activities.coordinator_log import completion
from db.tables import card_holds, decisions, xa_branches
from db.xa import PG_PREPARED_XACTS, XaBranches
from domain.two_phase import BranchCall, Decision, branch_gid, coordinator_workflow_id, tx_id_of
from recovery.metrics import RecoveryMetrics
from wiring.services import XA_SCHEMAS

log = logging.getLogger(__name__)

CARD = "card"


@dataclass
class SweepReport:
    committed: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    left_to_coordinator: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.committed or self.aborted or self.left_to_coordinator)

    @property
    def left_open(self) -> int:
        """Transactions still open past the grace after this round."""
        return len(self.left_to_coordinator) + len(self.failed)


async def sweep(
    engine: AsyncEngine, client: Client, grace: timedelta, card: CardHoldParticipant
) -> SweepReport:
    open_branches = await _open_branches(engine, grace)
    report = SweepReport()
    for tx_id, participants in sorted(open_branches.items()):
        try:
            decision = await _decide(engine, client, tx_id, sorted(participants))
            if decision is None:
                report.left_to_coordinator.append(tx_id)
                continue
            for participant in sorted(participants):
                await resolve_branch(engine, card, tx_id, participant, decision)
            await complete_if_settled(engine, tx_id)
        except Exception:  # one stubborn transaction must not stall the rest
            log.exception("could not recover 2PC %s; next round retries", tx_id)
            report.failed.append(tx_id)
            continue
        (report.committed if decision is Decision.COMMIT else report.aborted).append(tx_id)
        log.warning("recovered 2PC %s: %s %s", tx_id, decision.value, sorted(participants))
    return report


async def run_periodically(
    engine: AsyncEngine,
    client: Client,
    every: timedelta,
    grace: timedelta,
    card: CardHoldParticipant,
    metrics: RecoveryMetrics | None = None,
) -> None:
    """The worker's background sweep; a failed round is logged and the next one tries."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            report = await sweep(engine, client, grace, card)
        except Exception:  # one bad round must not stop recovery for good
            log.exception("recovery sweep failed; retrying in %s", every)
            if metrics is not None:
                metrics.sweep_failed()
            continue
        if metrics is not None:
            metrics.swept(report.left_open)


async def _open_branches(engine: AsyncEngine, grace: timedelta) -> dict[str, set[str]]:
    cutoff = func.now() - grace
    xacts = PG_PREPARED_XACTS.c
    found: dict[str, set[str]] = defaultdict(set)
    async with engine.connect() as conn:
        gids = await conn.scalars(
            select(xacts.gid).where(
                xacts.gid.like("tpc:%"),
                xacts.database == func.current_database(),
                xacts.prepared < cutoff,
            )
        )
        for gid in gids:
            parsed = tx_id_of(gid)
            if parsed is not None:
                found[parsed[0]].add(parsed[1])
        held = await conn.scalars(
            select(card_holds.c.tx_id).where(
                card_holds.c.status.in_(OPEN),
                # Old enough to be orphaned, or past its expiry whatever its age.
                or_(card_holds.c.created_at < cutoff, card_holds.c.expires_at <= func.now()),
            )
        )
        for tx_id in held:
            found[tx_id].add(CARD)
    return found


async def _decide(
    engine: AsyncEngine, client: Client, tx_id: str, participants: list[str]
) -> Decision | None:
    async with engine.connect() as conn:
        logged = await conn.scalar(select(decisions.c.decision).where(decisions.c.tx_id == tx_id))
    if logged is not None:
        return Decision(logged)
    if await _coordinator_running(client, tx_id):
        return None
    return await logged_or_abort(engine, tx_id, participants)


async def logged_or_abort(engine: AsyncEngine, tx_id: str, participants: list[str]) -> Decision:
    """The logged decision; ABORT, logged first, when there is none (presumed abort),
    naming the `participants` it will be carried out on."""
    async with engine.begin() as conn:
        # First writer wins: if the coordinator logged meanwhile, follow it.
        await conn.execute(
            insert(decisions)
            .values(tx_id=tx_id, decision=Decision.ABORT.value, participants=participants, votes={})
            .on_conflict_do_nothing(index_elements=[decisions.c.tx_id])
        )
        logged = await conn.scalar(select(decisions.c.decision).where(decisions.c.tx_id == tx_id))
    return Decision(str(logged))


async def complete_if_settled(engine: AsyncEngine, tx_id: str) -> None:
    """Mark the transaction complete once none of its branches is open, of any age:
    the sweep resolved only those past the grace, and a coordinator may finish the
    rest (it marks the transaction complete itself)."""
    async with engine.begin() as conn:
        prepared = await conn.scalar(
            select(func.count())
            .select_from(PG_PREPARED_XACTS)
            .where(
                PG_PREPARED_XACTS.c.gid.like(f"tpc:{tx_id}:%"),
                PG_PREPARED_XACTS.c.database == func.current_database(),
            )
        )
        held = await conn.scalar(
            select(func.count())
            .select_from(card_holds)
            .where(card_holds.c.tx_id == tx_id, card_holds.c.status.in_(OPEN))
        )
        if not prepared and not held:
            await conn.execute(completion(tx_id))


async def _coordinator_running(client: Client, tx_id: str) -> bool:
    try:
        description = await client.get_workflow_handle(coordinator_workflow_id(tx_id)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.status == WorkflowExecutionStatus.RUNNING


async def resolve_branch(
    engine: AsyncEngine,
    card: CardHoldParticipant,
    tx_id: str,
    participant: str,
    decision: Decision,
) -> None:
    """Carry out `decision` on one participant's branch (idempotent, any order).

    The call has no payload: recovery knows only the transaction id, so each
    participant finds what it needs in its own rows (the card, its order).
    """
    call = BranchCall(tx_id=tx_id, gid=branch_gid(tx_id, participant))
    if participant == CARD:
        if decision is Decision.COMMIT:
            await card.confirm_card_hold(call)
        else:
            await card.cancel_card_hold(call)
        return
    branches = XaBranches(engine, xa_branches[XA_SCHEMAS[participant]])
    if decision is Decision.COMMIT:
        await branches.commit(call)
    else:
        await branches.abort(call)
