"""How a payment activity fails when the provider does: refuse, or retry later.

A refusal is final: the activity fails non-retryable and the saga compensates.
A transient fault asks Temporal for the next attempt after a delay computed
here, exponential with jitter (resilience.backoff), never sooner than the
provider's Retry-After, and after an open breaker's remaining wait rather than
at once. A forward step has a deadline counted from its first attempt: once
the next attempt would start past it, the step fails as PaymentUnavailable and
the saga compensates instead of holding stock while the provider is down.
Undos have no deadline: they retry until the provider takes them.

The failures raised here are not chained to the HTTP client's exceptions: the
message says what happened, and a chain of httpx/httpcore tracebacks would
push the failure past Temporal's size limit, leaving operators nothing to read.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._common import refusal
from activities.provider_client import ProviderRefused, ProviderUnavailable
from domain.errors import ErrorType
from resilience.backoff import Backoff
from resilience.breaker import CircuitOpen

T = TypeVar("T")

# Retryable failure types, as operators see them on a pending activity.
UNAVAILABLE = "ProviderUnavailable"
CIRCUIT_OPEN = "CircuitOpen"
REFUSED_UNDO = "ProviderRefusedUndo"


class ProviderRetry:
    def __init__(
        self,
        backoff: Backoff,
        step_deadline_s: float,
        attempt_timeout_s: float = 25.0,
        rng: random.Random | None = None,
    ) -> None:
        self._backoff = backoff
        self._deadline_s = step_deadline_s
        # Under the step's 30 s start-to-close: an attempt that ran into every
        # timeout on every call (pool, connect, read, a row lock) ends itself,
        # rolled back, instead of running on after Temporal gave up on it.
        self._attempt_timeout_s = attempt_timeout_s
        self._rng = rng or random.Random()

    async def step(self, call: Callable[[], Awaitable[T]]) -> T:
        """A forward step: refusals are final, transient faults retry until the deadline."""
        return await self._attempt(call, refusals="final", deadline_s=self._deadline_s)

    async def final(self, call: Callable[[], Awaitable[T]]) -> T:
        """A step past a saga's point of no return (a return's refund): refusals are
        final, transient faults retry with no deadline, since giving up after an
        answer was lost could undo a saga whose money had moved."""
        return await self._attempt(call, refusals="final", deadline_s=None)

    async def transient(self, call: Callable[[], Awaitable[T]]) -> T:
        """Transient faults retried (bounded by the caller's Temporal timeouts);
        refusals raised to the caller, which turns them into a vote."""
        return await self._attempt(call, refusals="raise", deadline_s=None)

    async def undo(self, call: Callable[[], Awaitable[T]]) -> T:
        """An undo: everything retries, refusals too, since an undo must end done."""
        return await self._attempt(call, refusals="retry", deadline_s=None)

    async def _attempt(
        self,
        call: Callable[[], Awaitable[T]],
        refusals: Literal["final", "raise", "retry"],
        deadline_s: float | None,
    ) -> T:
        err: Exception
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                return await call()
        except TimeoutError:
            err = ProviderUnavailable(f"attempt took over {self._attempt_timeout_s:g} s")
        except ProviderRefused as refused:
            if refusals == "raise":
                raise
            if refusals == "final":
                kind = (
                    ErrorType.PAYMENT_DECLINED
                    if refused.status == 402
                    else ErrorType.PAYMENT_REJECTED
                )
                raise refusal(
                    kind, refused.message, status=refused.status, code=refused.code
                ) from None
            err = refused
        except (ProviderUnavailable, CircuitOpen) as transient:
            err = transient
        raise self._later(err, deadline_s=deadline_s) from None

    def _delay_for(self, err: Exception, attempt: int) -> float:
        delay = self._backoff.delay(attempt, self._rng)
        if isinstance(err, CircuitOpen):
            # Everyone waiting on the breaker must not arrive in the same instant.
            return err.retry_after + self._rng.uniform(0, self._backoff.initial_s)
        if isinstance(err, ProviderUnavailable) and err.retry_after is not None:
            return max(delay, err.retry_after)
        return delay

    def _later(self, err: Exception, deadline_s: float | None) -> Exception:
        if not activity.in_activity():
            return err  # the recovery sweep: it logs and tries again next round
        info = activity.info()
        delay = self._delay_for(err, info.attempt)
        if deadline_s is not None:
            elapsed = (datetime.now(UTC) - info.scheduled_time).total_seconds()
            if elapsed + delay > deadline_s:
                return refusal(
                    ErrorType.PAYMENT_UNAVAILABLE,
                    f"gave up after {info.attempt} attempt(s) in {elapsed:.1f} s: the next "
                    f"would pass the step's {deadline_s:g} s deadline ({err})",
                )
        kind = (
            CIRCUIT_OPEN
            if isinstance(err, CircuitOpen)
            else REFUSED_UNDO
            if isinstance(err, ProviderRefused)
            else UNAVAILABLE
        )
        activity.logger.warning("attempt %d failed (%s); next in %.2f s", info.attempt, err, delay)
        return ApplicationError(
            str(err),
            {"delay_s": round(delay, 3)},
            type=kind,
            next_retry_delay=timedelta(seconds=delay),
        )
