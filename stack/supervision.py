"""Keeping the children `run` started running: restart crashed apps, hold what is asked for.

An app (worker, relay, consumers, choreography, API, payment simulator) that
exits on its own is started again under the restart policy (stack.restarts),
each restart logged; one that crash-loops ends supervision with a line naming
it, and the caller stops everything. The apps keep their state in their
servers (the payment simulator in its journal, payment_provider.journal) and
retry their way through a neighbour's restart, so starting one again is
always safe: Temporal hands a dead worker's tasks to the next one.

Servers (PostgreSQL, Temporal, NATS) are not restarted: a server that died
under the apps has lost connections, locks and perhaps data that `run` would
have to check before anything trusts it again. Its death ends supervision too.

A child can be *held*: its exits are then expected and not counted (an
operator running the worker by hand, the chaos run killing a part on
purpose), and a held app is started again only when released.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stack.errors import StackError
from stack.process import ManagedProcess
from stack.restarts import CrashLoop, RestartPolicy, RestartTracker, describe_exit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Child:
    process: ManagedProcess
    stop: Callable[[], Awaitable[object]]  # with the right signal and grace period
    restart: bool  # an app; servers are never restarted


class Supervision:
    """Watches the children; `run()` returns why the system must stop."""

    def __init__(self, children: Sequence[Child], policy: RestartPolicy) -> None:
        self._children = children  # the supervisor's own list, filled as it starts them
        self._policy = policy
        self._holds: dict[str, asyncio.Event] = {}
        self._trackers: dict[str, RestartTracker] = {}
        # Restarts after exits nobody asked for, by app: what a chaos run reports.
        self.crash_restarts: Counter[str] = Counter()
        self._ended = False

    async def run(self) -> str:
        """Restart crashed apps until a child crash-loops or a server dies; returns why."""
        watches = [asyncio.ensure_future(self._watch(child)) for child in self._children]
        try:
            done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
            return done.pop().result()
        finally:
            # Everything is being stopped now: a late release must not start a child again.
            self._ended = True
            for watch in watches:
                watch.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    def held(self, name: str) -> bool:
        return name in self._holds

    def hold(self, name: str) -> ManagedProcess:
        """From now on `name` exiting is expected; a held app is not restarted."""
        child = self._child(name)
        self._holds.setdefault(name, asyncio.Event())
        return child.process

    async def stop_and_hold(self, name: str) -> int | None:
        """Hold an app and stop it gracefully; returns its exit code."""
        child = self._child(name)
        if not child.restart:
            raise StackError(f"{name} is a server: only apps can be stopped and handed over")
        self.hold(name)
        await child.stop()
        return child.process.returncode

    def release(self, name: str) -> ManagedProcess:
        """End a hold; a held app that is down is started at once (no backoff)."""
        child = self._child(name)
        hold = self._holds.get(name)
        if hold is None:
            return child.process
        if child.restart and not child.process.alive and not self._ended:
            # Should the start fail, the hold stays: the app is not left down and
            # unwatched, and the operator may ask again.
            self._launch(child, "released")
        del self._holds[name]
        hold.set()
        return child.process

    async def _watch(self, child: Child) -> str:
        name, process = child.process.name, child.process
        tracker = self._trackers.setdefault(name, RestartTracker(self._policy))
        tracker.started(_now())
        while True:
            code = await process.wait()
            if (hold := self._holds.get(name)) is not None:
                logger.info("%s is down (%s) and held: left to whoever holds it", name,
                            describe_exit(code))  # fmt: skip
                await hold.wait()  # and whoever holds it brings it back
                continue
            if not child.restart:
                return (
                    f"{name} exited on its own ({describe_exit(code)}); servers are not "
                    "restarted, so everything stops"
                )
            decision = tracker.exited(_now())
            if isinstance(decision, CrashLoop):
                return (
                    f"{name} is crash-looping ({decision.exits} exits within "
                    f"{decision.within_s:.0f}s, the last with {describe_exit(code)}): "
                    "stopping everything"
                )
            logger.warning(
                "%s exited on its own (%s); restarting it in %.1fs (restart %d)",
                name,
                describe_exit(code),
                decision.delay_s,
                decision.attempt,
            )
            await asyncio.sleep(decision.delay_s)
            # Held (or released and so started) during the wait: not ours to start.
            if name not in self._holds and not process.alive:
                self._launch(child, f"restart {decision.attempt}")
                self.crash_restarts[name] += 1

    def _launch(self, child: Child, why: str) -> None:
        child.process.start()
        self._trackers.setdefault(child.process.name, RestartTracker(self._policy)).started(_now())
        logger.warning("%s restarted as pid %s (%s)", child.process.name, child.process.pid, why)

    def _child(self, name: str) -> Child:
        for child in self._children:
            if child.process.name == name:
                return child
        known = ", ".join(child.process.name for child in self._children)
        raise StackError(f"no child named {name!r} (running: {known})")


def _now() -> float:
    return asyncio.get_running_loop().time()
