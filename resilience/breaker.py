"""A circuit breaker in the style of Resilience4j, with a count-based sliding window.

One instance per downstream, shared by every activity execution of a worker
process. CLOSED judges the last `sliding_window_size` outcomes; once at least
`minimum_calls` are in, a failure rate >= the threshold opens it. OPEN fails
fast with `CircuitOpen` until `wait_in_open_s` has passed, then (lazily, on the
next look) HALF_OPEN lets `half_open_calls` trial calls through; when all have
reported, the same threshold decides between OPEN (a fresh wait) and CLOSED
(an empty window).

Every method is synchronous, so on one event loop each runs to completion
without interleaving and no lock is needed. That also means it is not safe to
share across threads: use it from async activities only.

Callers classify outcomes themselves (`Permit.failure()` for a downstream
fault, `Permit.ignore()` for a 429 or a cancellation). Use the permit as a
context manager so a half-open trial slot is always given back: a permit that
is never settled holds its slot for as long as the breaker stays HALF_OPEN.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from types import TracebackType

logger = logging.getLogger(__name__)

StateListener = Callable[[str, "BreakerState", "BreakerState"], None]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The breaker refused the call; `retry_after` is a hint in seconds, never negative."""

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = max(0.0, retry_after)
        super().__init__(f"circuit {name!r} is open; next trial in {self.retry_after:.1f} s")

    def __reduce__(self) -> tuple[type[CircuitOpen], tuple[str, float]]:
        # The default would re-call __init__ with the message alone.
        return CircuitOpen, (self.name, self.retry_after)


@dataclass(frozen=True)
class _Settings:
    failure_rate_threshold: float
    sliding_window_size: int
    minimum_calls: int
    wait_in_open_s: float
    half_open_calls: int

    def __post_init__(self) -> None:
        # Comparisons are written so that NaN fails them too.
        if not 0 < self.failure_rate_threshold <= 100:
            raise ValueError("failure_rate_threshold must be in (0, 100]")
        if not self.sliding_window_size >= 1:
            raise ValueError("sliding_window_size must be >= 1")
        # Rejected, not clamped: a minimum the window can never hold is a typo in
        # configuration, and clamping would quietly trip sooner than configured.
        if not 1 <= self.minimum_calls <= self.sliding_window_size:
            raise ValueError("minimum_calls must be in [1, sliding_window_size]")
        if not (self.wait_in_open_s > 0 and math.isfinite(self.wait_in_open_s)):
            raise ValueError("wait_in_open_s must be a finite number > 0")
        if not self.half_open_calls >= 1:
            raise ValueError("half_open_calls must be >= 1")


class Permit:
    """Leave to make one call; the first outcome reported counts, later ones are no-ops."""

    __slots__ = ("_breaker", "_generation", "_settled")

    def __init__(self, breaker: CircuitBreaker, generation: int) -> None:
        self._breaker = breaker
        self._generation = generation
        self._settled = False

    def success(self) -> None:
        self._settle(failed=False)

    def failure(self) -> None:
        self._settle(failed=True)

    def ignore(self) -> None:
        """Count nothing, but hand a half-open trial slot back."""
        if not self._settled:
            self._settled = True
            self._breaker._release(self._generation)

    def _settle(self, *, failed: bool) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._record(self._generation, failed=failed)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An escaping exception is not a verdict on the downstream (it may be a
        # CancelledError or our own bug); only an explicit failure() counts.
        if exc_type is None:
            self.success()
        else:
            self.ignore()


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_rate_threshold: float = 50.0,
        sliding_window_size: int = 100,
        minimum_calls: int = 10,
        wait_in_open_s: float = 60.0,
        half_open_calls: int = 10,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
    ) -> None:
        if not name:
            raise ValueError("name must not be empty")
        self.name = name
        self._settings = _Settings(
            failure_rate_threshold=failure_rate_threshold,
            sliding_window_size=sliding_window_size,
            minimum_calls=minimum_calls,
            wait_in_open_s=wait_in_open_s,
            half_open_calls=half_open_calls,
        )
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        # Bumped on every change of state: a permit from an older generation
        # reports into counts that no longer exist, so it is dropped.
        self._generation = 0
        self._transitions = 0
        self._opened_at = 0.0
        self._trials_out = 0  # half-open permits handed out and not ignored
        self._new_window(sliding_window_size, minimum_calls)

    @property
    def state(self) -> BreakerState:
        # OPEN turns HALF_OPEN when first observed after the wait, so `state`,
        # `snapshot()` and `acquire()` always agree without a timer task.
        if self._state is BreakerState.OPEN and self._open_remaining() <= 0:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def acquire(self) -> Permit:
        """A permit for one call, or CircuitOpen when the breaker refuses it."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpen(self.name, self._open_remaining())
        if state is BreakerState.HALF_OPEN:
            if self._trials_out >= self._settings.half_open_calls:
                raise CircuitOpen(self.name, self._trial_retry_after())
            self._trials_out += 1
        return Permit(self, self._generation)

    def reset(self) -> None:
        """Back to CLOSED with an empty window; permits already out no longer count."""
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED)
        else:
            self._generation += 1
            self._new_window(self._settings.sliding_window_size, self._settings.minimum_calls)

    def snapshot(self) -> dict[str, object]:
        """JSON-ready view; in OPEN the counts are those that opened the breaker."""
        state = self.state
        return {
            "name": self.name,
            "state": state.value,
            "failure_rate": self._failure_rate(),
            "calls": len(self._window),
            "failures": self._failures,
            "open_remaining_s": self._open_remaining() if state is BreakerState.OPEN else 0.0,
            "transitions": self._transitions,
            "settings": asdict(self._settings),
        }

    def _record(self, generation: int, *, failed: bool) -> None:
        # A matching generation means the state is CLOSED or HALF_OPEN: permits
        # are only handed out there, and any change of state bumps it.
        if generation != self._generation:
            return
        if len(self._window) == self._window.maxlen:
            self._failures -= self._window[0]  # about to fall out of the window
        self._window.append(failed)
        self._failures += failed
        rate = self._failure_rate()
        if rate is None:
            return
        if rate >= self._settings.failure_rate_threshold:
            self._transition(BreakerState.OPEN)
        elif self._state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.CLOSED)

    def _release(self, generation: int) -> None:
        if generation == self._generation and self._state is BreakerState.HALF_OPEN:
            self._trials_out -= 1

    def _new_window(self, size: int, minimum: int) -> None:
        # HALF_OPEN gets its own window of exactly `half_open_calls`, so the one
        # rate rule decides both states: no rate until the window is judged.
        self._window: deque[bool] = deque(maxlen=size)
        self._minimum = minimum
        self._failures = 0

    def _failure_rate(self) -> float | None:
        calls = len(self._window)
        if calls < self._minimum:
            return None
        return 100.0 * self._failures / calls

    def _open_remaining(self) -> float:
        return max(0.0, self._opened_at + self._settings.wait_in_open_s - self._clock())

    def _trial_retry_after(self) -> float:
        # Slots free up when a trial call finishes, which no clock can predict.
        # Suggest a short retry: long enough not to spin, short enough that a
        # breaker about to close isn't left idle for a whole wait_in_open_s.
        return min(1.0, max(0.1, self._settings.wait_in_open_s / 10))

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        # Logged first: the window about to be replaced shows what led here.
        self._log_transition(old, new)
        self._state = new
        self._generation += 1
        self._transitions += 1
        settings = self._settings
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        elif new is BreakerState.HALF_OPEN:
            self._trials_out = 0
            self._new_window(settings.half_open_calls, settings.half_open_calls)
        else:
            self._new_window(settings.sliding_window_size, settings.minimum_calls)
        self._notify(old, new)

    def _log_transition(self, old: BreakerState, new: BreakerState) -> None:
        rate = self._failure_rate()
        logger.log(
            logging.WARNING if new is BreakerState.OPEN else logging.INFO,
            "circuit %s: %s -> %s (failure rate %s over %d calls, window %s)",
            self.name,
            old.value,
            new.value,
            "n/a" if rate is None else f"{rate:.1f}%",
            len(self._window),
            self._window.maxlen,
            extra={"breaker": self.name, "breaker_state": new.value},
        )

    def _notify(self, old: BreakerState, new: BreakerState) -> None:
        if self._on_state_change is None:
            return
        try:
            self._on_state_change(self.name, old, new)
        except Exception:
            # The listener is observability; its bug must not turn the caller's
            # successful call, or its refused one, into a different error.
            logger.exception("circuit %s: on_state_change failed", self.name)
