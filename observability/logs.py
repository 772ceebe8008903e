"""Logs: one JSON object a line, carrying the workflow and order they are about.

`configure(settings, service)` is what every entrypoint calls. With
`SAGA_LOG_FORMAT=json` each record is a line of JSON with time, level, logger,
message, the service, and whatever `log_context` holds where it was logged:
activities set `workflow_id`, `order_id` and `activity` for their attempt
(observability.temporal_metrics' interceptor), the API sets `order_id` for a
request about one, the relay sets them for the event it is handling.

Every line, in either format, passes a redaction filter: payment tokens and
the values of secret-looking fields never reach a log.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from settings import Settings

_NOTHING: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_context", default=_NOTHING
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Card tokens, and values of fields named like secrets, whatever format the message has.
_SECRETS = re.compile(
    r"\btok_[A-Za-z0-9_]+|"
    r"(?P<key>(?:payment_token|api_key|authorization|password|secret|codec_key)[\"']?\s*[:=]\s*)"
    r"(?P<quote>[\"']?)(?:bearer\s+)?[^\"',\s}]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    def hide(match: re.Match[str]) -> str:
        if match.group("key"):
            return f"{match.group('key')}{match.group('quote')}[redacted]"
        return "tok_[redacted]"

    return _SECRETS.sub(hide, text)


def bind(**fields: str | None) -> None:
    """Add `fields` for the rest of the current task (an HTTP request's, say)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add `fields` to every record logged inside the block (and tasks it starts)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def order_id_of(workflow_id: str) -> str | None:
    """The order a saga, its 2PC coordinator or a choreographed order's events are about,
    from its workflow id or correlation id."""
    for prefix in ("order-", "tpc-", "choreography-"):
        if workflow_id.startswith(prefix):
            return workflow_id[len(prefix) :]
    return None


class _Enrich(logging.Filter):
    """At log time: the context the record was logged in, and its secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.log_context = _context.get()
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonLines(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self._service,
            "message": record.getMessage(),
            **getattr(record, "log_context", {}),
        }
        # The SDK's activity logger carries its own context: keep the ids from it.
        temporal = getattr(record, "temporal_activity", None) or getattr(
            record, "temporal_workflow", None
        )
        if isinstance(temporal, dict) and "workflow_id" in temporal:
            line.setdefault("workflow_id", temporal["workflow_id"])
            order_id = order_id_of(str(temporal["workflow_id"]))
            if order_id:
                line.setdefault("order_id", order_id)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def configure(settings: Settings, service: str) -> None:
    """Root logging for a process: level, format (text or JSON lines), redaction."""
    handler = logging.StreamHandler()
    handler.addFilter(_Enrich())
    handler.setFormatter(
        JsonLines(service) if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
