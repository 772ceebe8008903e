"""Injected faults: what they are, how long they last, what each does to a request.

A fault lasts `count` requests or `for_seconds`, whichever is given (both: the
first to run out); with neither it lasts until `DELETE /admin/faults`. With
`path_contains` it applies only to requests whose path contains that text
(e.g. `/capture`), and only those count. Faults
are consulted in the order they were added: latency adds its delay and passes
the request on, the first fault that answers, hangs or drops ends it. Every
request a fault is consulted on counts against its `count`.

Modes: `status` (the default) answers that status, with `Retry-After` for a
429; `error_rate` answers it for a `rate` share of requests (`seed` makes the
choice repeatable); `latency` delays, then serves; `hang` answers nothing for
`seconds` (or until the client gives up), then drops the connection; `down`
drops it at once. A faulted request never reaches the books: nothing applies
and nothing is stored under its idempotency key. Except `lose_answer`, the
one a client can't tell from `hang` or `down`: the request applies (and its
answer is stored under its key), then the answer is lost, after holding for
`seconds` (past the client's timeout, or 0 for a dropped connection).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count as counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from payment_provider.errors import invalid_request

InjectableStatus = Literal[400, 401, 402, 409, 429, 500, 503]


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: int | None


@dataclass(frozen=True)
class Hang:
    seconds: float


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class LoseAnswer:
    seconds: float


Action = Delay | Answer | Hang | Drop | LoseAnswer


class FaultSpec(BaseModel):
    # Strict: a count is 2, not "2", 2.0 or true; seconds are a number, not "0.5".
    model_config = ConfigDict(extra="forbid", strict=True)

    count: int | None = Field(default=None, ge=1)
    for_seconds: float | None = Field(default=None, gt=0)
    # Only requests whose path contains this (e.g. "/capture"); none: every /v1 request.
    path_contains: str | None = Field(default=None, min_length=1, max_length=200)

    def action(self, rng: random.Random) -> Action | None:
        raise NotImplementedError


class _Answering(BaseModel):
    model_config = ConfigDict(strict=True)

    status: InjectableStatus = 500
    retry_after: int | None = Field(default=None, ge=0, description="seconds; 429/503")

    @field_validator("retry_after")
    @classmethod
    def _retryable_status(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("status") not in (429, 503):
            raise ValueError("only for status 429 or 503")
        return value

    def answer(self) -> Answer:
        # A 429 always says when to come back, as rate limiters do.
        default = 1 if self.status == 429 else None
        return Answer(self.status, self.retry_after if self.retry_after is not None else default)


class StatusFault(FaultSpec, _Answering):
    mode: Literal["status"] = "status"
    status: InjectableStatus

    def action(self, rng: random.Random) -> Action | None:
        return self.answer()


class ErrorRateFault(FaultSpec, _Answering):
    mode: Literal["error_rate"]
    rate: float = Field(ge=0, le=1)
    seed: int | None = Field(default=None, description="repeatable choices; none: random")

    def action(self, rng: random.Random) -> Action | None:
        return self.answer() if rng.random() < self.rate else None


class LatencyFault(FaultSpec):
    mode: Literal["latency"]
    seconds: float = Field(gt=0, le=600)

    def action(self, rng: random.Random) -> Action | None:
        return Delay(self.seconds)


class HangFault(FaultSpec):
    mode: Literal["hang"]
    seconds: float = Field(gt=0, le=3600)

    def action(self, rng: random.Random) -> Action | None:
        return Hang(self.seconds)


class DownFault(FaultSpec):
    mode: Literal["down"]

    def action(self, rng: random.Random) -> Action | None:
        return Drop()


class LoseAnswerFault(FaultSpec):
    mode: Literal["lose_answer"]
    seconds: float = Field(default=0, ge=0, le=3600, description="hold before dropping")

    def action(self, rng: random.Random) -> Action | None:
        return LoseAnswer(self.seconds)


_MODES: dict[str, type[FaultSpec]] = {
    "status": StatusFault,
    "error_rate": ErrorRateFault,
    "latency": LatencyFault,
    "hang": HangFault,
    "down": DownFault,
    "lose_answer": LoseAnswerFault,
}


def parse_fault(payload: Mapping[str, object]) -> FaultSpec:
    """The spec `payload` describes (no `mode`: a status fault), or a 422 naming the field."""
    mode = payload.get("mode", "status")
    model = _MODES.get(mode) if isinstance(mode, str) else None
    if model is None:
        raise invalid_request([(("mode",), f"must be one of {', '.join(_MODES)}")])
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request([(e["loc"], e["msg"]) for e in exc.errors()]) from None


@dataclass
class ActiveFault:
    id: str
    spec: FaultSpec
    remaining: int | None
    expires_at: float | None
    rng: random.Random

    def live(self, now: float) -> bool:
        used_up = self.remaining is not None and self.remaining <= 0
        return not used_up and (self.expires_at is None or now < self.expires_at)

    def view(self, now: float) -> dict[str, object]:
        expires_in = None if self.expires_at is None else round(self.expires_at - now, 3)
        spec = self.spec.model_dump(exclude_none=True)
        return {"id": self.id, **spec, "remaining": self.remaining, "expires_in": expires_in}


class FaultBook:
    """Active faults. Methods never await, so each runs atomically on the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._faults: list[ActiveFault] = []
        self._ids = counter(1)

    def add(self, spec: FaultSpec) -> ActiveFault:
        now = self._clock()
        expires_at = None if spec.for_seconds is None else now + spec.for_seconds
        seed = spec.seed if isinstance(spec, ErrorRateFault) else None
        fault = ActiveFault(
            f"flt_{next(self._ids)}", spec, spec.count, expires_at, random.Random(seed)
        )
        self._faults.append(fault)
        return fault

    def clear(self) -> int:
        cleared, self._faults = len(self.active()), []
        return cleared

    def active(self) -> list[ActiveFault]:
        now = self._clock()
        self._faults = [fault for fault in self._faults if fault.live(now)]
        return list(self._faults)

    def views(self) -> list[dict[str, object]]:
        now = self._clock()
        return [fault.view(now) for fault in self.active()]

    def plan(self, path: str = "") -> list[Action]:
        """What to do to the next /v1 request, in order; uses up one of each fault consulted."""
        actions: list[Action] = []
        for fault in self.active():
            if fault.spec.path_contains is not None and fault.spec.path_contains not in path:
                continue
            action = fault.spec.action(fault.rng)
            if fault.remaining is not None:
                fault.remaining -= 1
            if action is None:
                continue
            actions.append(action)
            if not isinstance(action, Delay):
                break
        return actions
