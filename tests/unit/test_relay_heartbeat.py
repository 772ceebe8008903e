"""A relay whose lease heartbeat fails (PostgreSQL away) waits before trying again,
instead of looping as fast as refused connections return."""

from __future__ import annotations

from db.engine import create_engine
from relay.leases import PartitionLeases
from relay.polling_loop import _heartbeat
from stack.ports import free_port
from wiring.served import RELAYED


async def test_a_failed_heartbeat_is_retried_after_the_poll_interval_not_at_once():
    nowhere = create_engine(f"postgresql+asyncpg://relay:x@127.0.0.1:{free_port()}/none")
    leases = PartitionLeases(nowhere, RELAYED, "relay-test", ttl_s=2.0)
    try:
        assert leases.due()
        await _heartbeat(leases, retry_in_s=1.0)  # nothing listens there: it fails
        assert not leases.due()
        assert 0.5 < leases.renew_in() <= 1.0
        assert leases.partitions() == []
    finally:
        await nowhere.dispose()
