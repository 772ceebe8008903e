"""Partition leases: several relay instances side by side, each aggregate published by one.

Every instance heartbeats into `relay.members`; from the live members each one
computes the same consistent-hash assignment (relay.ring) and takes, renews or
releases leases in `relay.leases` to match it (the tables it is handed,
db.kit_tables.RelayTables) — so when an instance joins or
leaves, only the partitions that must move, move.

A lease has a TTL and an epoch. Taking a lease bumps its epoch (the fencing
token); renewing keeps it. A pass over the outbox first locks the lease rows of
its partitions `FOR SHARE` and checks owner and epoch: nobody can take them
while the pass runs, and a pass by an instance whose lease was taken finds its
epoch stale and does nothing. An instance paused past its TTL (SIGSTOP, a long
GC, a frozen VM) also finds on waking that its own deadline has passed and
stops publishing; if it was paused inside a pass, PostgreSQL ends that
transaction (idle_in_transaction_session_timeout) so its locks cannot hold the
partitions hostage and its marks are never written.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.kit_tables import RelayTables
from relay.ring import owned_by

log = logging.getLogger(__name__)


def new_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class PartitionLeases:
    def __init__(
        self, engine: AsyncEngine, tables: RelayTables, instance_id: str, ttl_s: float
    ) -> None:
        self._engine = engine
        self.lease_table: Table = tables.leases
        self._members = tables.members
        self._partitions = tables.partitions
        self.instance_id = instance_id
        self._ttl = timedelta(seconds=ttl_s)
        self._ttl_s = ttl_s
        self.held: dict[int, int] = {}  # partition -> epoch we were granted
        self._valid_until = 0.0  # monotonic: past it, our view of `held` is too old to act on
        self._renew_at = 0.0

    def partitions(self) -> list[int]:
        """The partitions this instance may work on now (none if its renewal is overdue)."""
        return sorted(self.held) if time.monotonic() < self._valid_until else []

    def deadline(self) -> float:
        """Monotonic time after which a pass must stop publishing."""
        return self._valid_until

    def due(self) -> bool:
        return time.monotonic() >= self._renew_at

    def renew_in(self) -> float:
        """Seconds until the next heartbeat is due: a quiet relay must wake for it."""
        return max(self._renew_at - time.monotonic(), 0.0)

    def retry_heartbeat_in(self, seconds: float) -> None:
        """A heartbeat failed (PostgreSQL away): try again then, not at once and in a loop."""
        self._renew_at = time.monotonic() + seconds

    async def heartbeat(self) -> None:
        started = time.monotonic()
        # Renewal first and on its own: nothing another instance holds may make
        # this instance lose what it already has.
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(self._members)
                .values(instance_id=self.instance_id)
                .on_conflict_do_update(
                    index_elements=[self._members.c.instance_id], set_={"heartbeat_at": func.now()}
                )
            )
            await self._renew(conn)
            # Forget members long gone, so the table does not grow with restarts.
            await conn.execute(
                delete(self._members).where(
                    self._members.c.heartbeat_at < func.now() - self._ttl * 10
                )
            )
            live = await conn.scalars(
                select(self._members.c.instance_id).where(
                    self._members.c.heartbeat_at > func.now() - self._ttl
                )
            )
            wanted = owned_by(self.instance_id, list(live), self._partitions)
            await self._release(conn, set(self.held) - wanted)
        # Measured from before the renewal: the database's TTL started no later.
        self._valid_until = started + self._ttl_s * 0.8
        self._renew_at = started + self._ttl_s / 3
        async with self._engine.begin() as conn:
            await self._acquire(conn, wanted - set(self.held))

    async def leave(self) -> None:
        """Hand everything back at once, so the others need not wait for expiry."""
        async with self._engine.begin() as conn:
            await self._release(conn, set(self.held))
            await conn.execute(
                delete(self._members).where(self._members.c.instance_id == self.instance_id)
            )
        self._valid_until = 0.0

    def confirm(self, epochs: Mapping[int, int]) -> bool:
        """Inside a pass: the leases its claim locked (partition -> epoch in the table)
        are the ones this instance was granted, and its view of them is fresh."""
        if time.monotonic() >= self._valid_until:
            return False
        stale = [p for p, epoch in epochs.items() if self.held.get(p) != epoch]
        if stale:
            log.warning("lost leases on partitions %s; not publishing them", stale)
            for p in stale:
                self.held.pop(p, None)
        return not stale

    async def _release(self, conn: AsyncConnection, partitions: set[int]) -> None:
        if not partitions:
            return
        await conn.execute(
            update(self.lease_table)
            .where(
                self.lease_table.c.partition.in_(partitions),
                self.lease_table.c.owner == self.instance_id,
            )
            .values(owner=None, expires_at=func.to_timestamp(0))
        )
        for p in partitions:
            self.held.pop(p, None)
        log.info("released partitions %s", sorted(partitions))

    async def _renew(self, conn: AsyncConnection) -> None:
        if not self.held:
            return
        rows = await conn.execute(
            update(self.lease_table)
            .where(
                self.lease_table.c.partition.in_(list(self.held)),
                self.lease_table.c.owner == self.instance_id,
                self.lease_table.c.expires_at > func.now(),
            )
            .values(expires_at=func.now() + self._ttl)
            .returning(self.lease_table.c.partition, self.lease_table.c.epoch)
        )
        renewed = {p: e for p, e in rows}
        lost = [p for p in self.held if renewed.get(p) != self.held[p]]
        if lost:
            log.warning("leases on partitions %s expired before renewal", sorted(lost))
        self.held = {p: e for p, e in renewed.items() if self.held.get(p) == e}

    async def _acquire(self, conn: AsyncConnection, partitions: set[int]) -> None:
        if not partitions:
            return
        # SKIP LOCKED: a lease a lapsed owner still holds in an open pass is
        # taken on a later heartbeat, not waited for.
        free = (
            select(self.lease_table.c.partition)
            .where(
                self.lease_table.c.partition.in_(partitions),
                (self.lease_table.c.owner.is_(None))
                | (self.lease_table.c.expires_at <= func.now()),
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = await conn.execute(
            update(self.lease_table)
            .where(self.lease_table.c.partition.in_(free))
            .values(
                owner=self.instance_id,
                epoch=self.lease_table.c.epoch + 1,
                expires_at=func.now() + self._ttl,
            )
            .returning(self.lease_table.c.partition, self.lease_table.c.epoch)
        )
        taken = {p: e for p, e in rows}
        self.held.update(taken)
        if taken:
            log.info("took partitions %s", sorted(taken))
