"""Two-phase commit: what the coordinator and its participants say to each other.

Every participant speaks one protocol — prepare, commit, abort — whatever it
is underneath (a PostgreSQL prepared transaction, or a try/confirm/cancel
hold). Each call is idempotent: it may arrive twice, or abort before prepare.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.saga import Runs


class Vote(StrEnum):
    YES = "YES"
    NO = "NO"
    TIMEOUT = "TIMEOUT"


class Decision(StrEnum):
    COMMIT = "COMMIT"
    ABORT = "ABORT"


class ParticipantSpec(BaseModel):
    """A participant as the coordinator sees it: a name and its three activities."""

    name: str
    kind: str  # "xa" or "tcc": for people reading the UI; the protocol is the same
    prepare: str
    commit: str
    abort: str
    payload: dict[str, Any] = Field(default_factory=dict)
    # A prepared branch holds its rows until the decision, so two transactions
    # preparing in parallel can each hold what the other waits for (one the
    # product, the other the wallet) until both time out and both abort. Ranked
    # participants prepare in ascending rank, one rank after another: every
    # transaction takes the shared rows in one order, and the waits form no
    # cycle. None: it locks nothing shared, and prepares with the first rank.
    lock_rank: int | None = None
    # LOCAL: its activities are short transactions in a service's database, run
    # as local activities by the coordinator (by one that began after
    # workflows.steps.LOCAL_STEPS). Absent from older inputs: REMOTE.
    runs: Runs = Runs.REMOTE


class TwoPhaseInput(BaseModel):
    tx_id: str
    participants: list[ParticipantSpec]
    prepare_timeout_s: float = 10.0


class BranchCall(BaseModel):
    """What each participant activity receives; `gid` names its branch of the transaction."""

    tx_id: str
    gid: str
    payload: dict[str, Any] = Field(default_factory=dict)


class VoteReply(BaseModel):
    vote: Vote
    reason: str | None = None
    # The business error type behind a NO (OutOfStock, InsufficientCredit, ...).
    refusal: str | None = None


class BranchAck(BaseModel):
    gid: str
    outcome: str


class DecisionRecord(BaseModel):
    tx_id: str
    decision: Decision
    participants: list[str]
    votes: dict[str, Vote]


class TwoPhaseOutcome(BaseModel):
    tx_id: str
    decision: Decision | None = None
    votes: dict[str, Vote] = Field(default_factory=dict)
    refusals: dict[str, str] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)
    phase: str = "prepare"  # then "commit" or "abort" once logged, then "done"
    # Participants that carried out the decision, in the order they answered.
    acknowledged: list[str] = Field(default_factory=list)


def branch_gid(tx_id: str, participant: str) -> str:
    """PostgreSQL's prepared-transaction id for one participant (at most 200 bytes)."""
    return f"tpc:{tx_id}:{participant}"


def tx_id_of(gid: str) -> tuple[str, str] | None:
    """(tx_id, participant) of one of our gids; None for anyone else's."""
    if not gid.startswith("tpc:"):
        return None
    tx_id, _, participant = gid[4:].rpartition(":")
    return (tx_id, participant) if tx_id else None


def coordinator_workflow_id(tx_id: str) -> str:
    return f"tpc-{tx_id}"


class ResolveTransaction(BaseModel):
    """Finish a transaction whose coordinator failed or was terminated."""

    tx_id: str
    participants: list[str]


class TransactionResolved(BaseModel):
    tx_id: str
    decision: Decision
