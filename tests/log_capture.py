"""The process's logging as an entrypoint configures it, written into a buffer."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Literal

from observability.logs import configure
from settings_slices import LogConfig
from wiring.order_hooks import order_log_fields


def configured(
    log_format: Literal["text", "json"], quiet: tuple[str, ...] = ()
) -> Iterator[io.StringIO]:
    """Yields the buffer; restores the handlers after. `quiet` loggers log warnings only."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure(LogConfig("INFO", log_format), "test", correlate=order_log_fields)
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    hushed = {name: logging.getLogger(name).level for name in quiet}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    yield buffer
    root.handlers[:], root.level = saved_handlers, saved_level
    for name, level in hushed.items():
        logging.getLogger(name).setLevel(level)
