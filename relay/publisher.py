"""What both relay modes share: an outbox row's message, its publication, and its failure.

`publish_chain` publishes an aggregate's rows in order (subject, headers,
`Nats-Msg-Id` = event id, trace context) and stops at the first failure;
`record_failure` counts a refused event's attempt in its row, backs it off and,
after the last attempt, marks it FAILED and copies it to the dead-letter
subject. The polling pass (relay.polling) and the CDC relay (relay.cdc) both
fail rows only through it, so an event fails the same way in either mode and
across restarts; what JetStream acknowledged both mark with
relay.outbox.mark_published.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
from opentelemetry.trace import SpanKind
from sqlalchemy import Row, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from db.kit_tables import schema_of
from messaging import wire
from observability.logs import correlated, log_context
from observability.tracing import TRACER
from observability.tracing import extract as extract_trace
from observability.tracing import inject as inject_trace
from relay import outbox
from relay.config import RelayConfig

log = logging.getLogger(__name__)


def envelope_of(schema: str, row: Any) -> tuple[str, bytes, dict[str, str]]:
    """Subject, body and headers of a row of `schema`'s outbox (a Row, or its columns
    as attributes); the schema is the envelope's `source`."""
    headers = dict(row.headers or {})
    body = wire.Envelope(
        event_id=str(row.event_id),
        source=schema,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        event_type=row.event_type,
        payload=row.payload,
        headers=headers,
        occurred_at=row.created_at,
    )
    nats_headers = {
        wire.MSG_ID: str(row.event_id),
        wire.EVENT_TYPE: row.event_type,
        wire.AGGREGATE_TYPE: row.aggregate_type,
        wire.AGGREGATE_ID: row.aggregate_id,
        wire.CORRELATION_ID: str(headers.get("correlation_id", "")),
    }
    subject = wire.subject_for(row.aggregate_type, row.event_type)
    return subject, body.model_dump_json().encode(), nats_headers


@dataclass
class ChainOutcome:
    published: list[str] = field(default_factory=list)
    failure: tuple[Row[Any], BaseException] | None = None
    duplicates: int = 0
    broker_error: str | None = None


# Failures that are the event's own: retrying the same bytes cannot help, so
# they count against its attempts. Anything else is the broker's, and only delays.
EVENT_FAULTS: tuple[type[BaseException], ...] = (
    nats.errors.MaxPayloadError,
    nats.errors.BadSubjectError,
    nats.js.errors.BadRequestError,
    ValueError,
    TypeError,
)


def event_log_context(row: Row[Any]) -> contextlib.AbstractContextManager[None]:
    """What a line about this event is about: the event, its saga, and what the
    application's hook finds in its id (observability.logs.correlated)."""
    workflow_id = str((row.headers or {}).get("correlation_id") or "")
    return log_context(
        event_id=str(row.event_id), workflow_id=workflow_id, **correlated(workflow_id)
    )


async def publish_chain(
    js: Any, schema: str, chain: list[Row[Any]], config: RelayConfig, deadline: float | None
) -> ChainOutcome:
    outcome = ChainOutcome()
    for row in chain:
        if deadline is not None and time.monotonic() >= deadline:
            # Paused past our lease (the clock jumped): the rest is not ours to send.
            return outcome
        try:
            subject, body, headers = envelope_of(schema, row)
            with TRACER.start_as_current_span(
                f"publish {row.event_type}",
                context=extract_trace(row.headers),
                kind=SpanKind.PRODUCER,
                attributes={"messaging.destination.name": subject, "event_id": str(row.event_id)},
            ):
                inject_trace(headers)
                ack = await js.publish(
                    subject, body, timeout=config.publish_timeout_s, headers=headers
                )
        except EVENT_FAULTS as err:
            outcome.failure = (row, err)
            return outcome
        except Exception as err:  # timeouts, no responders, a reconnecting client
            outcome.broker_error = f"{type(err).__name__}: {err}"
            return outcome
        if getattr(ack, "duplicate", False):
            outcome.duplicates += 1
            with event_log_context(row):
                log.warning("event %s was already in the stream (published twice)", row.event_id)
        outcome.published.append(str(row.event_id))
    return outcome


_RETRYING = "event %s failed, attempt %d of %d (next in %.1f s): %s"


async def record_failure(
    conn: AsyncConnection,
    js: Any,
    table: Table,
    event_id: str,
    error: BaseException,
    config: RelayConfig,
) -> bool:
    """Count a failed attempt of an event the broker refuses in its outbox `table`;
    True when it was the last.

    Both relay modes fail an event here. The count is the row's, read under the
    row's lock (a polling pass holds it already), so a restarted relay, or the
    other mode, goes on counting instead of starting again. The next attempt is
    due after a full-jitter backoff; the last one marks the row FAILED and copies
    the event to the dead-letter subject. A row settled meanwhile (no longer
    PENDING) is left as it is.
    """
    row = await outbox.lock_pending(conn, table, event_id)
    if row is None:
        return False
    attempts = int(row.attempts) + 1
    dead = attempts >= config.max_attempts
    message = f"{type(error).__name__}: {error}"[:1000]
    # Full jitter: relays retrying together must not hammer the broker in step.
    delay = random.uniform(0, min(config.backoff_cap_s, config.backoff_base_s * 2**attempts))
    with event_log_context(row):
        if dead:
            await dead_letter(js, schema_of(table), row, message, config)
            log.error("event %s dead-lettered after %d attempts: %s", event_id, attempts, message)
        else:
            log.warning(_RETRYING, event_id, attempts, config.max_attempts, delay, message)
    await outbox.record_attempt(
        conn, table, event_id, outbox.Attempt(attempts, message, dead, delay)
    )
    return dead


async def dead_letter(
    js: Any, schema: str, row: Row[Any], reason: str, config: RelayConfig
) -> None:
    _, body, headers = envelope_of(schema, row)
    headers = {**headers, wire.MSG_ID: f"dl-{row.event_id}", "Dead-Letter-Reason": reason}
    subject = wire.dead_letter_subject_for(_token(row.aggregate_type), _token(row.event_type))
    # The full event first; if the event itself is what cannot be published
    # (too large, say), its envelope without the payload: the row keeps it.
    stripped = json.loads(body)
    stripped["payload"] = {"omitted": "see the outbox row", "bytes": len(body)}
    for data in (body, json.dumps(stripped).encode()):
        try:
            await js.publish(subject, data, timeout=config.publish_timeout_s, headers=headers)
            return
        except Exception as err:  # the row stays FAILED in the outbox: the CLI still lists it
            log.error("could not copy %s to the dead-letter subject: %s", row.event_id, err)


def _token(value: str) -> str:
    """A subject token that cannot itself be the reason the publish failed."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in value)
    return cleaned or "_"
