"""The short chaos run: every kind of fault strikes under load, and every order still ends clean.

The same run as `make chaos`, smaller: its own system on free ports (worker,
relay, consumers, choreography handlers and API as processes; PostgreSQL,
Temporal on SQLite, NATS), each fault once (the partitions shorter than
`make chaos`'s; a kind the machine cannot make is skipped, and the report
says why), orchestrated and choreographed orders mixed. The verdict is the
audit over PostgreSQL, the provider's books and Temporal's open sagas, and
the database's orders against what the clients were told.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter

import pytest

from bench.orders import Mix
from chaos.alert_watch import prometheus_binary
from chaos.faults import Fault, unavailable
from chaos.netfaults import TABLE_PREFIX, chaos_tables, nft_unusable
from chaos.report import ChaosPlan
from chaos.run import fault_schedule, run_chaos
from stack.errors import StackError
from stack.run import project_root
from stack.sandbox import sandbox

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]


async def test_orders_end_fully_done_or_undone_while_every_part_dies_once():
    missing = unavailable()
    plan = ChaosPlan(
        faults=len(Fault) - len(missing),
        gap_s=(1.5, 3.0),
        outage_s=(0.5, 1.5),
        partition_s=(3.0, 6.0),
        concurrency=3,
        mix=Mix(declined=0.1, out_of_stock=0.1, cancelled=0.1, store_credit=0.2),
        settle_s=180,
        choreography=0.4,
        seed=20261125,
    )

    report = await run_chaos(plan, say=print)

    assert {s.fault for s in report.struck} == set(Fault) - set(missing)
    assert report.skipped == {fault.value: why for fault, why in missing.items()}
    if nft_unusable() is None:  # here the partitions must have struck, and been undone
        assert {Fault.POSTGRES_PARTITION, Fault.PROVIDER_PARTITION} <= set(Fault) - set(missing)
        assert all("dropped for" in s.detail for s in report.struck if "partition" in s.fault)
        assert chaos_tables() == []
    assert report.violations == []
    assert report.open_sagas == 0
    told = Counter(o.status for o in report.outcomes)
    assert set(told) <= {"CONFIRMED", "CANCELLED"}, report.summary()
    assert told["CONFIRMED"] > 0
    modes = Counter(o.mode for o in report.outcomes)
    assert modes["choreography"] > 0 and modes["orchestration"] > 0
    # What each client was told is what PostgreSQL holds.
    assert report.told_not_held == []
    # The run's own Prometheus watched the rules, and nothing it fired is still firing.
    if prometheus_binary() is not None:
        assert report.alerts_note is None
        assert report.alerts_still_firing == []
    assert report.orders_by_status == dict(sorted(told.items()))
    assert report.passed


async def test_a_part_crash_looping_under_the_run_ends_it_at_once_naming_the_part():
    with pytest.raises(StackError, match=r"^worker is crash-looping \(2 exits within"):
        # A setting only the worker reads, and a crash loop within a few exits.
        async with sandbox(
            "chaos-loop",
            worker_bulkheads="no-such-bulkhead",
            crash_loop_exits=2,
            restart_backoff_initial_s=0.1,
            restart_backoff_cap_s=0.1,
        ) as system:
            await asyncio.wait_for(asyncio.Event().wait(), 120)  # the load, never ending

    assert not any(app.alive for app in system.apps.values())
    assert not any(server.process.alive for server in system.servers.values())


@pytest.mark.skipif(nft_unusable() is not None, reason=f"partitions: {nft_unusable()}")
async def test_a_run_sigtermed_mid_partition_deletes_its_nft_table_on_the_way_out():
    skip = unavailable()
    seed = next(s for s in range(1000) if fault_schedule(1, random.Random(s), skip)[0]
                is Fault.POSTGRES_PARTITION)  # fmt: skip
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chaos", "--faults", "1", "--seed", str(seed),
        "--partition-s", "300", "300", "--min-gap", "1", "--max-gap", "1", "--concurrency", "1",
        cwd=project_root(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    ours = f"{TABLE_PREFIX}{run.pid}_"
    try:
        deadline = time.monotonic() + 240
        while not any(name.startswith(ours) for name in chaos_tables()):
            assert run.returncode is None, await run.communicate()
            assert time.monotonic() < deadline, "the partition never struck"
            await asyncio.sleep(0.5)

        os.kill(run.pid, signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 120)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()

    assert run.returncode == 130, err.decode()
    assert "interrupted: every fault undone" in err.decode()
    assert not any(name.startswith(ours) for name in chaos_tables())
