"""The pgoutput reader: a committed transaction's inserts, and a loud stop on bad input."""

from __future__ import annotations

import struct

import pytest

from relay.pgoutput import ProtocolError, Reader


def relation(relid: int, schema: str, table: str, columns: list[str]) -> bytes:
    body = b"R" + struct.pack("!i", relid) + schema.encode() + b"\0" + table.encode() + b"\0"
    body += struct.pack("!bh", ord("d"), len(columns))
    for name in columns:
        body += struct.pack("!b", 0) + name.encode() + b"\0" + struct.pack("!ii", 25, -1)
    return body


def insert(relid: int, values: list[str | None]) -> bytes:
    body = b"I" + struct.pack("!i", relid) + b"N" + struct.pack("!h", len(values))
    for value in values:
        if value is None:
            body += b"n"
        else:
            body += b"t" + struct.pack("!i", len(value.encode())) + value.encode()
    return body


BEGIN = b"B" + struct.pack("!qqi", 100, 0, 7)
COMMIT = b"C" + struct.pack("!bqqq", 0, 100, 120, 0)


def test_a_committed_transaction_yields_its_inserts_in_order():
    reader = Reader()
    assert reader.feed(90, BEGIN) is None
    assert reader.feed(91, relation(16401, "orders", "outbox", ["event_id", "note"])) is None
    assert reader.feed(92, insert(16401, ["e1", "first"])) is None
    assert reader.feed(93, insert(16401, ["e2", None])) is None

    done = reader.feed(100, COMMIT)

    assert done is not None
    assert done.xid == 7
    assert done.commit_lsn == 100
    assert [(r.schema, values) for r, values in done.rows] == [
        ("orders", {"event_id": "e1", "note": "first"}),
        ("orders", {"event_id": "e2", "note": None}),
    ]


def test_an_insert_of_an_unknown_relation_stops_the_reader():
    reader = Reader()
    reader.feed(90, BEGIN)
    with pytest.raises(ProtocolError, match="without its relation"):
        reader.feed(92, insert(99, ["e1"]))


def test_a_truncated_message_stops_the_reader():
    reader = Reader()
    reader.feed(90, BEGIN)
    reader.feed(91, relation(1, "orders", "outbox", ["event_id"]))
    with pytest.raises(ProtocolError, match="ends early"):
        reader.feed(92, insert(1, ["event"])[:-2])
