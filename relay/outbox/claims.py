"""The statements of a relay pass: claim due rows, settle the claim, mark what was
acknowledged (the CDC relay's), and the predicate both modes step around.

The statements a pass runs many times are built once per shape
(`functools.cache`, lists bound as arrays): building and keying them anew on
every pass was most of an idle relay's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Exists,
    Integer,
    Interval,
    Table,
    Update,
    and_,
    any_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.pass_connection import PassConnection

# Where a pass's claim and settle run: a relay loop's PassConnection, or any
# connection in autocommit (the operators' commands, tests).
PassConn = AsyncConnection | PassConnection


def retrying_ahead(outbox: Table, *, including_itself: bool, only_not_due: bool) -> Exists:
    """Whether a PENDING row of the outbox row's aggregate with a next attempt set
    (it failed, was re-driven, or was queued behind one) stands before it, or is it.

    The predicate of ix_<service>_outbox_retrying: a handful of rows to probe;
    without it a fresh backlog's plan scanned every pending row per candidate.
    Both modes keep an aggregate behind such a row, so neither overtakes it."""
    earlier = outbox.alias("earlier")
    ahead = earlier.c.seq <= outbox.c.seq if including_itself else earlier.c.seq < outbox.c.seq
    conditions = [
        earlier.c.aggregate_type == outbox.c.aggregate_type,
        earlier.c.aggregate_id == outbox.c.aggregate_id,
        earlier.c.status == "PENDING",
        earlier.c.next_attempt_at.is_not(None),
        ahead,
    ]
    if only_not_due:
        conditions.append(earlier.c.next_attempt_at > func.now())
    return select(earlier.c.seq).where(*conditions).exists()


async def _returned(conn: PassConn, statement: Update, params: dict[str, Any]) -> Sequence[Any]:
    if isinstance(conn, PassConnection):
        return await conn.rows(statement, params)
    return (await conn.execute(statement, params)).all()


async def claim(
    conn: PassConn,
    outbox: Table,
    batch_size: int,
    partitions: Sequence[int] | None,
    *,
    claim_ttl_s: float,
    retrying_only: bool,
    owner: str | None = None,
    leases: Table | None = None,
) -> list[Any]:
    """Claim a batch of due PENDING rows for `claim_ttl_s`, in one statement that
    commits on its own; the rows in `seq` order.

    A claim sets the row's next attempt to its expiry (`claimed_until`), which
    makes it what every relay already steps around: not due, and nothing of its
    aggregate overtakes it. So the pass holds no transaction open across its
    publishes, and a relay that dies mid-pass leaves its rows to the next claim
    after the expiry. Each row comes with the count of PENDING rows of its
    aggregate before it (`pending_before`) and whether it had a next attempt set
    before (`was_retrying`). With `owner` (a relay under leases): only rows of
    partitions whose lease that instance holds unexpired in `leases`, each with
    the lease's epoch (`lease_epoch`)."""
    fenced = owner is not None
    if fenced and leases is None:
        raise ValueError("a claim for an owner needs the leases it holds")
    query = _claim(
        outbox, batch_size, partitions is not None, retrying_only, leases if fenced else None
    )
    params: dict[str, Any] = {"ttl": timedelta(seconds=claim_ttl_s)}
    if partitions is not None:
        params["partitions"] = list(partitions)
    if fenced:
        params["owner"] = owner
    rows = await _returned(conn, query, params)
    # UPDATE ... RETURNING keeps no order: the chains are cut in seq order.
    return sorted(rows, key=lambda row: int(row.seq))


@cache
def _claim(
    outbox: Table, batch_size: int, partitioned: bool, retrying_only: bool, leases: Table | None
) -> Update:
    # Neither a row still waiting to retry (or claimed by a pass in flight) nor
    # anything queued behind one in its aggregate: a stuck aggregate must not
    # fill every batch, and an aggregate is published by one pass at a time.
    waiting_ahead = retrying_ahead(outbox, including_itself=False, only_not_due=True)
    # How many PENDING rows of its aggregate stand before each claimed row,
    # claimable or not: where this batch holds fewer, one is held elsewhere.
    earlier = outbox.alias("before_it")
    pending_before = (
        select(func.count())
        .where(
            earlier.c.aggregate_type == outbox.c.aggregate_type,
            earlier.c.aggregate_id == outbox.c.aggregate_id,
            earlier.c.status == "PENDING",
            earlier.c.seq < outbox.c.seq,
        )
        .scalar_subquery()
    )
    picked = (
        select(
            outbox.c.event_id,
            pending_before.label("pending_before"),
            outbox.c.next_attempt_at.is_not(None).label("was_retrying"),
        )
        .where(
            outbox.c.status == "PENDING",
            or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= func.now()),
            ~waiting_ahead,
        )
        .order_by(outbox.c.seq)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=outbox)
    )
    if partitioned:
        # An array, not an expanding IN: the statement's text stays the same
        # whatever the partitions, so nothing is rendered per pass.
        picked = picked.where(
            outbox.c.partition == any_(bindparam("partitions", type_=ARRAY(Integer)))
        )
    if retrying_only:  # what ix_<service>_outbox_retrying holds
        picked = picked.where(outbox.c.next_attempt_at.is_not(None))
    if leases is not None:
        ours = and_(
            leases.c.partition == outbox.c.partition,
            leases.c.owner == bindparam("owner"),
            leases.c.expires_at > func.now(),
        )
        picked = picked.add_columns(leases.c.epoch.label("lease_epoch")).join(leases, ours)
    chosen = picked.cte("picked")
    returned = [
        *outbox.c,
        chosen.c.pending_before,
        chosen.c.was_retrying,
        outbox.c.next_attempt_at.label("claimed_until"),
    ]
    if leases is not None:
        returned.append(chosen.c.lease_epoch)
    return (
        update(outbox)
        .where(outbox.c.event_id == chosen.c.event_id)
        .values(next_attempt_at=func.now() + bindparam("ttl", type_=Interval))
        .returning(*returned)
    )


async def settle(
    conn: PassConn,
    outbox: Table,
    claimed: Sequence[Any],
    published: Sequence[str],
    kept: Sequence[str] = (),
) -> list[float]:
    """End a claim in one statement: mark the acknowledged events PUBLISHED (their
    last attempt counted) and release the rest of the claim, but `kept` (failures,
    which record_failure backs off), due again at once; the published ones' lags in ms.

    Only rows still under this claim are touched: a row whose claim expired and
    that another pass claimed since is that pass's to settle."""
    settled = {*published, *kept}
    released = [r for r in claimed if str(r.event_id) not in settled]
    ids = [*published, *(str(r.event_id) for r in released)]
    if not ids:
        return []
    retrying = [str(r.event_id) for r in released if r.was_retrying]
    lags = await _returned(
        conn,
        _settle(outbox),
        {
            "ids": ids,
            "published": list(published),
            "retrying": retrying,
            "claimed_until": claimed[0].claimed_until,
        },
    )
    return [float(lag) for (lag,) in lags if lag is not None]


@cache
def _settle(outbox: Table) -> Update:
    ids = ARRAY(outbox.c.event_id.type)
    published = outbox.c.event_id == any_(bindparam("published", type_=ids))
    # A released row that had a next attempt set keeps one, due now: the CDC
    # relay's sweep takes exactly those rows, and must not lose them.
    retrying = outbox.c.event_id == any_(bindparam("retrying", type_=ids))
    return (
        update(outbox)
        .where(
            outbox.c.event_id == any_(bindparam("ids", type_=ids)),
            outbox.c.status == "PENDING",
            outbox.c.next_attempt_at == bindparam("claimed_until"),
        )
        .values(
            status=case((published, "PUBLISHED"), else_=outbox.c.status),
            published_at=case((published, func.now()), else_=outbox.c.published_at),
            attempts=case((published, outbox.c.attempts + 1), else_=outbox.c.attempts),
            next_attempt_at=case((retrying, func.now()), else_=None),
        )
        # The database's clock on both sides: the one created_at is written with.
        .returning(
            case(
                (published, func.extract("epoch", func.now() - outbox.c.created_at) * 1000),
                else_=None,
            )
        )
    )


async def mark_published(conn: AsyncConnection, outbox: Table, event_ids: list[str]) -> list[float]:
    """Mark acknowledged events PUBLISHED (their last attempt counted); their lags in ms."""
    if not event_ids:
        return []
    lags = await conn.execute(_mark_published(outbox), {"event_ids": event_ids})
    return [float(lag) for (lag,) in lags]


@cache
def _mark_published(outbox: Table) -> Update:
    return (
        update(outbox)
        .where(
            outbox.c.event_id == any_(bindparam("event_ids", type_=ARRAY(outbox.c.event_id.type))),
            outbox.c.status == "PENDING",
        )
        .values(status="PUBLISHED", published_at=func.now(), attempts=outbox.c.attempts + 1)
        # The database's clock on both sides: the one created_at is written with.
        .returning(func.extract("epoch", outbox.c.published_at - outbox.c.created_at) * 1000)
    )
