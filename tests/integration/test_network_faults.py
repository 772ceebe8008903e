"""The chaos run's network faults against real servers: what is cut off hangs, then answers.

A partition drops packets rather than refusing them, so a query on an open
connection hangs and a new connection times out, and both work again once
the partition ends, however it ends. Needs nft and the right to use it
(root); latency needs a kernel with sch_netem, or iptables and the NFQUEUE
target (chaos.held_latency). Without, the tests skip saying why.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from asyncio.subprocess import PIPE

import asyncpg
import httpx
import pytest

from chaos.held_latency import (
    IPTABLES,
    HeldLatency,
    held_latency_unusable,
    queue_rule,
    remove_leftover_rules,
)
from chaos.netfaults import (
    TABLE_PREFIX,
    Latency,
    Partition,
    chaos_tables,
    netem_unusable,
    nft_unusable,
    remove_leftovers,
    run_tool,
)
from payment_provider.embedded import EmbeddedProvider
from stack.postgres import EmbeddedPostgres

_NFT = nft_unusable()
_NETEM = netem_unusable()
_HELD = held_latency_unusable()
needs_nft = pytest.mark.skipif(_NFT is not None, reason=f"partitions: {_NFT}")


@needs_nft
async def test_a_partitioned_postgres_hangs_open_connections_and_times_out_new_ones(
    postgres: EmbeddedPostgres,
) -> None:
    open_conn = await asyncpg.connect(postgres.dsn())
    try:
        with Partition(postgres.port) as cut:
            asked = asyncio.ensure_future(open_conn.fetchval("SELECT 41 + 1"))
            # Timed out, not refused: no RST comes back through a partition.
            with pytest.raises(TimeoutError):
                await asyncpg.connect(postgres.dsn(), timeout=2)
            assert not asked.done()  # hung, not failed
        # The hung query's packets are retransmitted once the partition ends.
        assert await asyncio.wait_for(asked, 30) == 42
        again = await asyncpg.connect(postgres.dsn(), timeout=5)
        assert await again.fetchval("SELECT 1") == 1
        await again.close()
    finally:
        await open_conn.close()
    assert f"tcp port {postgres.port} on lo dropped for" in cut.detail
    assert "1 open connection(s) hung, 1 new one(s) got no answer" in cut.detail, cut.detail


@needs_nft
async def test_a_partitioned_provider_times_out_requests_then_answers(
    payment_provider: EmbeddedProvider,
) -> None:
    limits = httpx.Limits(max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=payment_provider.url, timeout=1.5, limits=limits) as kept:
        assert (await kept.get("/healthz")).status_code == 200  # a connection kept alive
        with Partition(payment_provider.port) as cut:
            with pytest.raises(httpx.ReadTimeout):  # on the open connection: no answer
                await kept.get("/healthz")
            async with httpx.AsyncClient(timeout=1.5) as fresh:
                with pytest.raises(httpx.ConnectTimeout):  # a new one: no SYN-ACK
                    await fresh.get(f"{payment_provider.url}/healthz")
        assert (await kept.get("/healthz")).status_code == 200
    assert f"tcp port {payment_provider.port} on lo dropped" in cut.detail


@needs_nft
async def test_a_partition_cancelled_mid_outage_is_undone_and_the_port_answers(
    postgres: EmbeddedPostgres,
) -> None:
    entered = asyncio.Event()

    async def strike() -> None:  # what chaos.faults does with a partition
        with Partition(postgres.port):
            entered.set()
            await asyncio.sleep(600)

    striking = asyncio.ensure_future(strike())
    await asyncio.wait_for(entered.wait(), 10)
    assert any(name.startswith(TABLE_PREFIX) for name in chaos_tables())

    striking.cancel()
    await asyncio.gather(striking, return_exceptions=True)

    assert chaos_tables() == []
    nft = await asyncio.create_subprocess_exec("nft", "list", "tables", stdout=PIPE)
    assert TABLE_PREFIX.encode() not in (await nft.communicate())[0]
    conn = await asyncpg.connect(postgres.dsn(), timeout=5)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()


@needs_nft
def test_a_dead_runs_partition_table_is_removed_by_the_next_run() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process: a run SIGKILLed mid-partition
    table = f"{TABLE_PREFIX}{dead.pid}_0"
    subprocess.run(["nft", "add", "table", "inet", table], check=True)
    with Partition(1):  # a live run's table (ours) must stay
        removed = remove_leftovers()
        assert len(chaos_tables()) == 1

    assert removed == [f"nft table inet {table}"]
    assert chaos_tables() == []


@pytest.mark.parametrize(
    "latency",
    [
        pytest.param(Latency, marks=pytest.mark.skipif(_NETEM is not None, reason=f"{_NETEM}")),
        pytest.param(HeldLatency, marks=pytest.mark.skipif(_HELD is not None, reason=f"{_HELD}")),
    ],
)
async def test_added_latency_slows_each_round_trip_to_postgres_then_goes(
    postgres: EmbeddedPostgres, latency: type[Latency] | type[HeldLatency]
) -> None:
    conn = await asyncpg.connect(postgres.dsn())
    try:
        with latency(postgres.port, delay_ms=200, jitter_ms=20) as slow:
            began = time.monotonic()
            for _ in range(3):
                assert await conn.fetchval("SELECT 1") == 1
            slowed = (time.monotonic() - began) / 3
        began = time.monotonic()
        await conn.fetchval("SELECT 1")
        after = time.monotonic() - began
    finally:
        await conn.close()
    assert slowed >= 0.15, slowed
    assert after < 0.1, after
    assert f"tcp to port {postgres.port} on lo" in slow.detail


@pytest.mark.skipif(_HELD is not None, reason=f"{_HELD}")
async def test_held_packets_go_through_once_the_holder_is_gone_and_a_dead_runs_rule_goes(
    postgres: EmbeddedPostgres,
) -> None:
    conn = await asyncpg.connect(postgres.dsn())
    dead = _dead_pid()  # a run SIGKILLed mid-fault: its rule stays, its holder is gone
    try:
        with HeldLatency(postgres.port) as slow:
            assert slow._holder is not None
            slow._holder.kill()
            slow._holder.wait()
            began = time.monotonic()
            assert await asyncio.wait_for(conn.fetchval("SELECT 1"), 5) == 1
            assert time.monotonic() - began < 0.1  # --queue-bypass: no one holds them
            run_tool(IPTABLES, "-w", "-t", "mangle", "-A", *queue_rule(postgres.port, dead))
            assert remove_leftover_rules() == [f"iptables mangle rule saga_chaos_{dead}"]
    finally:
        await conn.close()
    assert "saga_chaos_" not in run_tool(IPTABLES, "-w", "-t", "mangle", "-S", "OUTPUT")


def _dead_pid() -> int:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    return dead.pid
