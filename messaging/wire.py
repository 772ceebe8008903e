"""Events on the wire: the JetStream stream, subjects, headers and envelope.

The relay publishes every outbox row as one message; consumers read them back.
Both sides agree through this module only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

STREAM = "EVENTS"
SUBJECT_PREFIX = "events"
DEAD_LETTER_PREFIX = "deadletter"

# Message headers; Nats-Msg-Id is JetStream's own dedupe key.
MSG_ID = "Nats-Msg-Id"
EVENT_TYPE = "Event-Type"
AGGREGATE_TYPE = "Aggregate-Type"
AGGREGATE_ID = "Aggregate-Id"
CORRELATION_ID = "Correlation-Id"


def subject_for(aggregate_type: str, event_type: str) -> str:
    """`events.order.OrderConfirmed`: consumers filter by aggregate or by event."""
    return f"{SUBJECT_PREFIX}.{aggregate_type}.{event_type}"


def dead_letter_subject_for(aggregate_type: str, event_type: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{aggregate_type}.{event_type}"


class Envelope(BaseModel):
    """The message body: the outbox row as consumers need it."""

    event_id: str
    source: str  # the service schema that wrote it
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: dict[str, Any]
    headers: dict[str, Any]
    occurred_at: datetime


def misrouting(subject: str, envelope: Envelope, owners: Mapping[str, str]) -> str | None:
    """Why an event must not be acted on, or None: it came on another event's
    subject, or from a service that does not own its aggregate.

    Consumers dispatch on the envelope, while the broker's permissions are on
    subjects; the two must name the same event, from the service that owns it.
    `owners` (the application's, aggregate type -> service) names that service:
    the relay sets an envelope's `source` to the schema it read the row from,
    so a row written to another service's outbox arrives with the wrong source.
    An aggregate `owners` does not name may come from any service.
    """
    kind = (envelope.aggregate_type, envelope.event_type)
    if subject not in (subject_for(*kind), dead_letter_subject_for(*kind)):
        return f"{envelope.aggregate_type}.{envelope.event_type} came on {subject}"
    owner = owners.get(envelope.aggregate_type)
    if owner is not None and envelope.source != owner:
        return f"{envelope.aggregate_type} events come from {owner}, not {envelope.source!r}"
    return None
