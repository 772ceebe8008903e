"""The connection a relay's passes claim and settle on, below SQLAlchemy's execution.

A pass at the saga bench's trickle carries one event, and through SQLAlchemy
its two statements and the pool's checkout and checkin cost about 1 ms of CPU
of the 1.5 ms the whole pass did (`bench.relay_throughput`, bench/README.md).
So a relay loop keeps one connection checked out of its engine (its server
settings, TLS and credentials are the engine's) and runs relay.outbox's claim
and settle on the asyncpg connection under it: each statement compiled once
by SQLAlchemy, prepared once by asyncpg, its values and results converted by
the columns' own SQLAlchemy types, so a row reads the same as through
`AsyncConnection.execute`. Anything that fails drops the connection; the next
statement checks out a fresh one (a PostgreSQL restart costs one failed pass).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

Convert = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Prepared:
    """A statement as asyncpg takes it: `$n` text, its parameters' order and
    converters, and a row type with its columns' converters."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]  # literals SQLAlchemy bound itself ('PENDING', ...)
    binds: tuple[Convert, ...]
    make_row: Callable[[Iterable[Any]], Any]  # a named tuple of the RETURNING columns
    results: tuple[Convert, ...]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = (params[n] if n in params else self.fixed[n] for n in self.names)
        return [v if c is None else c(v) for v, c in zip(values, self.binds, strict=True)]

    def rows(self, records: Sequence[Any]) -> list[Any]:
        make, converts = self.make_row, self.results
        return [
            make(v if c is None else c(v) for v, c in zip(r, converts, strict=True))
            for r in records
        ]


@cache
def _prepare(statement: UpdateBase, dialect: Dialect) -> _Prepared:
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    binds = tuple(
        compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
    )
    columns = list(statement.exported_columns)
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    row = namedtuple("Returned", [c.key or f"_{i}" for i, c in enumerate(columns)], rename=True)  # type: ignore[misc]
    return _Prepared(str(compiled), names, dict(compiled.params), binds, row._make, results)


class PassConnection:
    """One connection of `engine`, in autocommit, for the passes of one relay loop
    (they run one after another: it serves one statement at a time)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._held: AsyncConnection | None = None
        self._driver: Any = None

    async def rows(self, statement: UpdateBase, params: Mapping[str, Any]) -> list[Any]:
        """The statement's RETURNING rows, as named tuples of its columns."""
        prepared = _prepare(statement, self.engine.dialect)
        try:
            driver = self._driver if self._held is not None else await self._check_out()
            return prepared.rows(await driver.fetch(prepared.sql, *prepared.args(params)))
        except BaseException:
            await self.close(invalidate=True)
            raise

    async def _check_out(self) -> Any:
        held = await self.engine.connect()
        try:
            held = await held.execution_options(isolation_level="AUTOCOMMIT")
            self._driver = (await held.get_raw_connection()).driver_connection
        except BaseException:
            await held.close()
            raise
        self._held = held
        return self._driver

    async def close(self, *, invalidate: bool = False) -> None:
        """Give the connection back (`invalidate`: it may be broken, so discard it)."""
        held, self._held, self._driver = self._held, None, None
        if held is None:
            return
        try:
            if invalidate:
                await held.invalidate()
        finally:
            await held.close()
