"""Just enough of PostgreSQL's pgoutput protocol (version 1) to read outbox inserts from the WAL.

Logical decoding hands each transaction over as Begin, its changes, Commit,
in commit order. Relation messages name the tables (and their columns) the
changes that follow refer to by oid; Insert carries the new row as text
values. Everything else is skipped: the publication only publishes inserts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Relation:
    schema: str
    table: str
    columns: tuple[str, ...]


@dataclass
class Transaction:
    """A committed transaction's inserts, in the order they were made."""

    xid: int
    rows: list[tuple[Relation, dict[str, str | None]]] = field(default_factory=list)
    commit_lsn: int = 0  # the slot may advance past this once the rows are delivered


class ProtocolError(ValueError):
    """A message this reader does not understand: stop rather than skip data."""


class Reader:
    """Decodes a stream of pgoutput messages; remembers relations across calls."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._open: Transaction | None = None

    def feed(self, lsn: int, message: bytes) -> Transaction | None:
        """One message; returns the transaction it completes, if it is a Commit."""
        kind, body = message[:1], _Cursor(message, 1)
        if kind == b"B":
            body.int64()  # final lsn
            body.int64()  # commit time
            self._open = Transaction(xid=body.int32())
        elif kind == b"R":
            relid = body.int32()
            schema, table = body.cstring(), body.cstring()
            body.int8()  # replica identity
            columns = []
            for _ in range(body.int16()):
                body.int8()  # flags
                columns.append(body.cstring())
                body.int32()  # type oid
                body.int32()  # type modifier
            self.relations[relid] = Relation(schema, table, tuple(columns))
        elif kind == b"I":
            relation = self.relations.get(body.int32())
            if relation is None or self._open is None or body.byte() != b"N":
                raise ProtocolError(f"insert at {lsn} without its relation or transaction")
            self._open.rows.append(
                (relation, dict(zip(relation.columns, _tuple(body), strict=True)))
            )
        elif kind == b"C":
            done, self._open = self._open, None
            if done is None:
                raise ProtocolError(f"commit at {lsn} without a begin")
            done.commit_lsn = lsn
            return done
        # Y (type), O (origin), T (truncate), M (message), U, D: not ours to relay.
        return None


def _tuple(body: _Cursor) -> list[str | None]:
    values: list[str | None] = []
    for _ in range(body.int16()):
        kind = body.byte()
        if kind == b"t":
            values.append(body.take(body.int32()).decode())
        elif kind == b"n":
            values.append(None)
        else:  # 'u': an unchanged TOASTed value, which an insert never has
            raise ProtocolError(f"unexpected column kind {kind!r} in an insert")
    return values


class _Cursor:
    def __init__(self, data: bytes, at: int) -> None:
        self._data, self._at = data, at

    def take(self, n: int) -> bytes:
        chunk = self._data[self._at : self._at + n]
        if len(chunk) != n:
            raise ProtocolError("message ends early")
        self._at += n
        return chunk

    def byte(self) -> bytes:
        return self.take(1)

    def int8(self) -> int:
        return int(struct.unpack("!b", self.take(1))[0])

    def int16(self) -> int:
        return int(struct.unpack("!h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!i", self.take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack("!q", self.take(8))[0])

    def cstring(self) -> str:
        end = self._data.index(b"\0", self._at)
        text = self._data[self._at : end].decode()
        self._at = end + 1
        return text
