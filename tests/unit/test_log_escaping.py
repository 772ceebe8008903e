"""Control characters are escaped in log messages and fields, in both formats."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from observability.logs import bind, escape, log_context
from tests.log_capture import configured

CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]]
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
TEXT_RECORD = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} [A-Z]+ \S+: .*")


@pytest.fixture(params=["text", "json"])
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    for buffer in configured(request.param):
        yield request.param, buffer


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    yield from configured("json")


def test_every_control_character_becomes_a_printable_escape():
    for char in CONTROLS:
        escaped = escape(f"a{char}b")
        assert escaped.isascii() and escaped.isprintable(), repr(char)
        assert escaped.startswith("a\\") and escaped.endswith("b")
    assert escape("\n\r\t") == "\\n\\r\\t"
    assert escape("\x1b[2J\x7f\x9b") == "\\x1b[2J\\x7f\\x9b"
    assert escape("\u2028\u2029") == "\\u2028\\u2029"


def test_a_backslash_is_escaped_so_an_escape_is_never_ambiguous():
    assert escape("\\n") == "\\\\n"
    assert escape("\\n") != escape("\n")


def test_printable_text_is_left_as_it_is():
    text = "GET /orders/abc-42 200 1.5 ms: prix 12,50 € — ordre reçu «ok» 注文"
    assert escape(text) == text


def test_a_message_and_its_arguments_stay_one_record(logged):
    log_format, buffer = logged
    forged = "\n2026-11-25 10:00:00,000 INFO api.access: GET /admin 200 1.0 ms"

    logging.getLogger("anything").info("got %s%s", forged, "".join(CONTROLS))

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert not RAW_CONTROL.search(buffer.getvalue())
    message = json.loads(lines[0])["message"] if log_format == "json" else lines[0]
    assert "got \\n2026-11-25 10:00:00,000 INFO api.access: GET /admin" in message


def test_every_json_field_is_escaped(json_log):
    buffer = json_log
    with log_context(order_id="o\n1", workflow_id="order-o\u20281"):
        bind(activity="a\x7fb")
        logging.getLogger("odd\rname").warning("x")

    (line,) = [json.loads(one) for one in buffer.getvalue().splitlines()]
    assert line["order_id"] == "o\\n1"
    assert line["workflow_id"] == "order-o\\u20281"
    assert line["activity"] == "a\\x7fb"
    assert line["logger"] == "odd\\rname"
    assert "\x7f" not in buffer.getvalue() and "\u2028" not in buffer.getvalue()


def test_a_traceback_cannot_forge_a_record_either(logged):
    log_format, buffer = logged
    try:
        raise ValueError("bad\n2026-11-25 10:00:00,000 INFO api.access: forged\x1b[2J")
    except ValueError:
        logging.getLogger("anything").exception("failed")

    text = buffer.getvalue()
    assert not RAW_CONTROL.search(text)
    if log_format == "json":
        (line,) = [json.loads(one) for one in text.splitlines()]
        assert "\x1b" not in line["exception"]
        assert "api.access: forged\\x1b[2J" in line["exception"].splitlines()[-1]
        assert line["exception"].startswith("Traceback (most recent call last):")
        return
    first, *rest = text.splitlines()
    assert TEXT_RECORD.fullmatch(first) and first.endswith("anything: failed")
    assert rest and all(line.startswith("    ") for line in rest), rest
    assert "    2026-11-25 10:00:00,000 INFO api.access: forged\\x1b[2J" in rest
