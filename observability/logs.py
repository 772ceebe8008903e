"""Logs: one JSON object a line, carrying the workflow (and what it is about) they concern.

`configure(settings.logs(), service, correlate=...)` is what every entrypoint calls. With
`SAGA_LOG_FORMAT=json` each record is a line of JSON with time, level, logger,
message, the service, and whatever `log_context` holds where it was logged:
activities set `workflow_id` and `activity` for their attempt
(observability.temporal_metrics' interceptor), the relay `workflow_id` and
`event_id` for the event it is handling. What a workflow id says beyond itself
is the application's to tell: `correlate` (its hook, say wiring.order_hooks)
turns one into more fields (`order_id`), and every line naming a workflow
carries them. The API sets `order_id` itself for a request about one.

Every line, in either format, passes a redaction filter: payment tokens and
the values of secret-looking fields never reach a log. Then every control
character (C0, DEL, C1, U+2028, U+2029) and the backslash in the message and
in every field is escaped (`\n`, `\x1b`, `\u2028`, `\\`): text from a request
(a path with `%0A`) cannot end a record and forge the next, move a terminal's
cursor, or read as anything but what it was. A record is one line; only a
traceback keeps its own line breaks: in the text format on continuation lines
indented so none can pass for a record, in JSON inside `exception`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from settings_slices import LogConfig

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


# Each control character, and the backslash that starts an escape, as the escape.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_ESCAPES = str.maketrans(
    {
        **{chr(code): f"\\x{code:02x}" for code in _CONTROLS},
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
        **_NAMED,
    }
)
# Traceback lines in the text format start so: no record's first line does.
TRACEBACK_INDENT = "    "


def escape(text: str) -> str:
    """`text` with no control character: each one, and the backslash, as its escape."""
    return text.translate(_ESCAPES)


def escape_traceback(text: str, indent: str = "") -> str:
    """A traceback's own line breaks kept, everything else in its lines escaped."""
    # split, not splitlines: that would take U+2028, \x1c or \x85 for a line break too.
    return "\n".join(indent + escape(line) for line in text.split("\n"))


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


# The application's hook: the fields a workflow (or correlation) id stands for.
Correlate = Callable[[str], Mapping[str, str]]


def _uncorrelated(_workflow_id: str) -> Mapping[str, str]:
    return _NOTHING


_correlate: Correlate = _uncorrelated


def correlated(workflow_id: str) -> Mapping[str, str]:
    """The fields the process's hook (given to `configure`) finds in a workflow id."""
    return _correlate(workflow_id) if workflow_id else _NOTHING


class _Enrich(logging.Filter):
    """At log time: the context the record was logged in, its secrets removed and
    its control characters escaped (the traceback's by each format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.log_context = {
            escape(key): escape(str(value)) for key, value in _context.get().items()
        }
        message = record.getMessage()
        cleaned = escape(redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        record.name = escape(record.name)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class TextLines(logging.Formatter):
    """The usual one-line format; a traceback follows on indented, escaped lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        for trailer in (record.exc_text, record.stack_info):
            if trailer:
                text += "\n" + escape_traceback(trailer, TRACEBACK_INDENT)
        return text


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
            workflow_id = escape(str(temporal["workflow_id"]))
            line.setdefault("workflow_id", workflow_id)
            for key, value in correlated(workflow_id).items():
                if value:
                    line.setdefault(key, value)
        if record.exc_text:
            line["exception"] = escape_traceback(record.exc_text)
        if record.stack_info:
            line["stack"] = escape_traceback(record.stack_info)
        return json.dumps(line, default=str)


def configure(logs: LogConfig, service: str, *, correlate: Correlate | None = None) -> None:
    """Root logging for a process: level, format (text or JSON lines), redaction, and
    the hook that finds what a workflow id is about (none: the id alone)."""
    global _correlate
    _correlate = correlate or _uncorrelated
    handler = logging.StreamHandler()
    handler.addFilter(_Enrich())
    handler.setFormatter(JsonLines(service) if logs.format == "json" else TextLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logs.level)
