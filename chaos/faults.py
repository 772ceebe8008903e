"""What the chaos run does to the system: each fault kills, restarts or cuts off one part.

The worker, the relay and the choreography handlers are SIGKILLed (no shutdown hook runs: in-flight
activities and publishes are cut off mid-way). PostgreSQL is SIGKILLed with
its backends, so it comes back through crash recovery, prepared 2PC branches
included. The Temporal dev server is stopped and started again on its SQLite
file. Each fault records when it struck and how long the part was down.

Each part is *held* by the system's supervision while the fault has it down
(stack.supervision): a kill made on purpose is not a crash, so it neither
counts towards a crash loop nor stops the system. The supervision starts a
killed app again when the fault releases it; a server the fault brings back
itself. Whatever else dies meanwhile is a real crash, restarted (or fatal)
as under `make run`.

The network faults kill nothing (chaos.netfaults): PostgreSQL or the payment
provider is partitioned from everything on the machine (its port's packets
dropped on lo by nftables), or PostgreSQL's packets are delayed (tc netem,
or where the kernel has no netem, queued by iptables and released late:
chaos.held_latency). Each is undone when its block ends, however it ends. unavailable() names
those this machine cannot make, and why, so the run leaves them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from chaos.held_latency import HeldLatency, held_latency_unusable, remove_leftover_rules
from chaos.netfaults import Latency, Partition, netem_unusable, nft_unusable, remove_leftovers
from stack.run import Supervisor


class Fault(StrEnum):
    KILL_WORKER = "kill-worker"
    KILL_RELAY = "kill-relay"
    KILL_CHOREOGRAPHY = "kill-choreography"
    CRASH_POSTGRES = "crash-postgres"
    RESTART_TEMPORAL = "restart-temporal"
    KILL_NATS_NODE = "kill-nats-node"
    POSTGRES_PARTITION = "postgres-partition"
    PROVIDER_PARTITION = "provider-partition"
    POSTGRES_LATENCY = "postgres-latency"


# Their outage is the plan's partition_s (seconds, not the kills' fraction of one).
NETWORK = frozenset({Fault.POSTGRES_PARTITION, Fault.PROVIDER_PARTITION, Fault.POSTGRES_LATENCY})


def unavailable() -> dict[Fault, str]:
    """The faults this machine cannot make, each with why (a run leaves them out)."""
    missing: dict[Fault, str] = {}
    nft = nft_unusable()
    if nft is not None:
        missing[Fault.POSTGRES_PARTITION] = missing[Fault.PROVIDER_PARTITION] = nft
    netem, held = netem_unusable(), held_latency_unusable()
    if netem is not None and held is not None:
        missing[Fault.POSTGRES_LATENCY] = f"{netem}; and {held}"
    return missing


def undo_leftovers(also_own: bool = False) -> list[str]:
    """Remove the network faults runs no longer alive left in place (with `also_own`,
    this run's too): what each names."""
    return remove_leftovers(also_own) + remove_leftover_rules(also_own)


@dataclass(frozen=True)
class Struck:
    fault: Fault
    at_s: float  # since the load began
    down_s: float  # from the kill until the part answered again
    orders_in_flight: int
    detail: str
    held_long: bool = False  # to outlast the alert rules' `for:` (chaos.long_faults)

    def __str__(self) -> str:
        return (
            f"{self.at_s:7.1f}s  {self.fault:<18} down {self.down_s:5.1f}s  "
            f"{self.orders_in_flight:>2} orders in flight  {self.detail}"
        )


async def strike(
    system: Supervisor, fault: Fault, outage_s: float, began: float, in_flight: int
) -> Struck:
    """Apply one fault, leave the part down for `outage_s`, and bring it back."""
    at = time.perf_counter() - began
    hit: Callable[[Supervisor, float], Awaitable[str]] = _FAULTS[fault]
    detail = await hit(system, outage_s)
    return Struck(fault, at, time.perf_counter() - began - at, in_flight, detail)


@contextlib.asynccontextmanager
async def _held(system: Supervisor, name: str) -> AsyncIterator[None]:
    system.supervision.hold(name)
    try:
        yield
    finally:
        system.supervision.release(name)  # an app: the supervision starts it again


async def _kill_app(name: str, system: Supervisor, outage_s: float) -> str:
    process = system.apps[name]
    pid = process.pid
    async with _held(system, name):
        code = process.kill()
        await asyncio.sleep(outage_s)
    return f"pid {pid} SIGKILLed (exit {code}), restarted as pid {process.pid}"


async def _crash_postgres(system: Supervisor, outage_s: float) -> str:
    server = system.servers["postgres"]
    pid = server.process.pid
    async with _held(system, "postgres"):
        server.process.kill()  # the postmaster and every backend: its process group
        await asyncio.sleep(outage_s)
        await server.start()  # crash recovery, then ready
    return f"postmaster pid {pid} and its backends SIGKILLed, recovered as pid {server.process.pid}"


async def _restart_temporal(system: Supervisor, outage_s: float) -> str:
    server = system.servers["temporal"]
    pid = server.process.pid
    async with _held(system, "temporal"):
        await server.stop()
        await asyncio.sleep(outage_s)
        await server.start()
    return f"pid {pid} stopped, started again on its SQLite file as pid {server.process.pid}"


async def _kill_nats_node(system: Supervisor, outage_s: float) -> str:
    """SIGKILL one node of the JetStream cluster, each in turn, while its peers go on."""
    nodes = sorted(name for name in system.servers if name.startswith("nats-"))
    if not nodes:
        raise RuntimeError("kill-nats-node needs the NATS cluster (nats_stream_replicas > 1)")
    # The longest running (the lowest pid): each node in turn, as they come back.
    name = min(nodes, key=lambda node: system.servers[node].process.pid or 0)
    server = system.servers[name]
    pid = server.process.pid
    async with _held(system, name):
        server.process.kill()
        await asyncio.sleep(outage_s)
        await server.start()  # it catches up on what its peers stored meanwhile
    peers = len(nodes) - 1
    return f"{name} pid {pid} SIGKILLed, {peers} peers went on; back as pid {server.process.pid}"


def _postgres_port(system: Supervisor) -> int:
    return urlsplit(system.database_url).port or 5432


def _provider_port(system: Supervisor) -> int:
    return urlsplit(system.payment_provider_url).port or 80


async def _partition(port_of: Callable[[Supervisor], int], system: Supervisor, s: float) -> str:
    with Partition(port_of(system)) as cut:
        await asyncio.sleep(s)
    return cut.detail


async def _postgres_latency(system: Supervisor, outage_s: float) -> str:
    slowing = Latency if netem_unusable() is None else HeldLatency
    with slowing(_postgres_port(system)) as slow:
        await asyncio.sleep(outage_s)
    return slow.detail


_FAULTS: dict[Fault, Callable[[Supervisor, float], Awaitable[str]]] = {
    Fault.KILL_WORKER: functools.partial(_kill_app, "worker"),
    Fault.KILL_RELAY: functools.partial(_kill_app, "relay"),
    Fault.KILL_CHOREOGRAPHY: functools.partial(_kill_app, "choreography"),
    Fault.CRASH_POSTGRES: _crash_postgres,
    Fault.RESTART_TEMPORAL: _restart_temporal,
    Fault.KILL_NATS_NODE: _kill_nats_node,
    Fault.POSTGRES_PARTITION: functools.partial(_partition, _postgres_port),
    Fault.PROVIDER_PARTITION: functools.partial(_partition, _provider_port),
    Fault.POSTGRES_LATENCY: _postgres_latency,
}
