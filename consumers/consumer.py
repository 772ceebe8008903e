"""What a consumer is: its definition (name, subjects, handler, inbox, owners), the
runner's options, the outcomes of a message and their counts, and how a body is
read. consumers.runner runs it."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy.exc
from nats.js.api import DeliverPolicy
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.wire import Envelope

Handler = Callable[[AsyncConnection, Envelope], Awaitable[None]]


@dataclass(frozen=True)
class Consumer:
    """A durable consumer: its name (also its key in the inbox), subjects and handler;
    the inbox it claims events in, and whose events may come from where."""

    name: str
    filter_subject: str | tuple[str, ...]
    handler: Handler
    # The application's: its inbox table (db.kit_tables.inbox), and the service
    # each aggregate's events must come from (messaging.wire.misrouting).
    inbox: Table = field(kw_only=True)
    owners: Mapping[str, str] = field(kw_only=True)
    # Where a new durable starts: ALL replays what the stream retains (how a
    # read model is built, or rebuilt under a new name); NEW skips history.
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL
    # Events it does not want are acked unapplied, with no database work (the
    # choreography's handlers pass over orchestrated orders' events).
    wants: Callable[[Envelope], bool] | None = None


@dataclass(frozen=True)
class RunnerOptions:
    batch_size: int = 20
    # How long one fetch waits for messages; also how soon `run` sees `stop`.
    fetch_timeout_s: float = 1.0
    # 0: redeliver for ever (handlers that undo, which must end done).
    max_deliver: int = 10
    # A message neither acked nor nak'ed this long (a crashed consumer) is redelivered.
    ack_wait_s: float = 30.0
    # Redelivery after a failure: base * 2^(deliveries - 1), capped. With the
    # defaults a failing event is retried for about four minutes (9 delays).
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    # Pause after the broker refused a fetch, so an outage is not a busy loop.
    fetch_error_pause_s: float = 1.0


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    RETRY = "retry"
    GAVE_UP = "gave-up"
    POISON = "poison"
    REFUSED = "refused"


def redelivery_delay(num_delivered: int, options: RunnerOptions) -> float:
    """Seconds until the next delivery of a message that failed on its n-th delivery."""
    exponent = min(max(num_delivered - 1, 0), 32)
    return float(min(options.backoff_cap_s, options.backoff_base_s * 2**exponent))


def parse(data: bytes) -> Envelope | None:
    """The envelope in a message body, its event id in canonical form; None if it is not one."""
    try:
        envelope = Envelope.model_validate_json(data)
        event_id = str(uuid.UUID(envelope.event_id))
    except ValueError:  # pydantic's ValidationError is a ValueError, as is a bad uuid
        return None
    return envelope.model_copy(update={"event_id": event_id})


# The database, not the event: connection refused or lost, pool exhausted.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    OSError,
    asyncio.TimeoutError,
)


class ConsumerStats:
    """Messages handled in this process, by consumer and outcome (consumers.metrics shows them)."""

    def __init__(self) -> None:
        self.handled: Counter[tuple[str, Outcome]] = Counter()

    def count(self, consumer: str, outcome: Outcome) -> None:
        self.handled[(consumer, outcome)] += 1
