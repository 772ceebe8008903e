"""When to restart a child that exited on its own, and when to give up on it.

Pure logic on a clock the caller passes in (the event loop's, or a test's).
A crashed child is restarted after an exponential, jittered delay
(resilience.backoff), so a child that dies at once does not spin the CPU and
two that died together do not come back in lockstep. A child that stayed up
`reset_after_s` had recovered: its next crash starts the backoff over. A child
that exits `loop_exits` times within `loop_window_s` is crash-looping: no
restart will help, and a person has to look.
"""

from __future__ import annotations

import random
import signal
from collections import deque
from dataclasses import dataclass

from resilience.backoff import Backoff
from settings import Settings


@dataclass(frozen=True)
class RestartPolicy:
    backoff: Backoff
    reset_after_s: float
    loop_exits: int
    loop_window_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            Backoff(settings.restart_backoff_initial_s, settings.restart_backoff_cap_s),
            settings.restart_reset_after_s,
            settings.crash_loop_exits,
            settings.crash_loop_window_s,
        )


@dataclass(frozen=True)
class Restart:
    attempt: int  # restarts since the child last stayed up `reset_after_s`
    delay_s: float


@dataclass(frozen=True)
class CrashLoop:
    exits: int
    within_s: float  # from the first of them to the last


class RestartTracker:
    """One child's exits and what to do about each."""

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng
        self._exits: deque[float] = deque()
        self._attempt = 0
        self._started_at: float | None = None

    def started(self, now: float) -> None:
        self._started_at = now

    def exited(self, now: float) -> Restart | CrashLoop:
        """Record an exit the child made on its own (not one that was asked for)."""
        policy = self._policy
        if self._started_at is not None and now - self._started_at >= policy.reset_after_s:
            self._attempt = 0
        self._started_at = None
        self._exits.append(now)
        while now - self._exits[0] > policy.loop_window_s:
            self._exits.popleft()
        if len(self._exits) >= policy.loop_exits:
            return CrashLoop(len(self._exits), now - self._exits[0])
        self._attempt += 1
        return Restart(self._attempt, policy.backoff.delay(self._attempt, self._rng))


def describe_exit(code: int | None) -> str:
    """'exit code 2' or 'signal SIGKILL': what a log line says about an exit."""
    if code is None:
        return "no exit code"
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"
