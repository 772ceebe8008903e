"""The SQL a piece of the application really runs, seen at the driver, to run again or EXPLAIN.

Every engine of this process (the API's own included) reports to a listener on
`Engine`; nothing is replaced, the statements run as they would anyway.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: Any

    def mentions(self, value: object) -> bool:
        return value in tuple(self.parameters or ())


@contextlib.contextmanager
def executed() -> Iterator[list[Statement]]:
    """Every statement any engine of this process executes inside the block."""
    seen: list[Statement] = []

    def record(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append(Statement(sql, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def reading_only(statements: Sequence[Statement], table: str, about: object) -> list[Statement]:
    """The SELECTs of `table` alone (no join, no subquery) with `about` among their parameters."""
    alone = re.compile(rf"^SELECT\s.*\sFROM {re.escape(table)}\s+WHERE\s", re.DOTALL)
    return [
        s
        for s in statements
        if s.mentions(about)
        and alone.match(s.sql)
        and s.sql.count("SELECT") == 1
        and "JOIN" not in s.sql
    ]


async def rows_returned(engine: AsyncEngine, statements: Sequence[Statement]) -> int:
    """How many rows the statements return, run again now as the application ran them."""
    total = 0
    async with engine.connect() as conn:
        for statement in statements:
            result = await conn.exec_driver_sql(statement.sql, tuple(statement.parameters))
            total += len(result.all())
    return total


async def plan(engine: AsyncEngine, statement: Statement, **settings: str) -> dict[str, Any]:
    """The plan PostgreSQL makes for `statement`, with `settings` set for it alone."""
    async with engine.connect() as conn:
        for name, value in settings.items():
            # SET LOCAL: gone with the transaction, not left on a pooled connection.
            await conn.exec_driver_sql(f"SET LOCAL {name} = {value}")
        result = await conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {statement.sql}", tuple(statement.parameters)
        )
        found: dict[str, Any] = result.scalar_one()[0]["Plan"]
        await conn.rollback()
    return found


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A plan node and every node under it."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
