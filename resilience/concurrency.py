"""A concurrency limit (a semaphore bulkhead): at most N calls at once, a short wait for a turn.

A call that finds every slot taken waits at most `max_wait_s`, then is refused
with `LimitReached` rather than queueing without bound: the caller's own
retry policy paces it, and what waits never holds more than the limit's share
of whatever it runs on (a worker's local activity slots).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class LimitReached(Exception):
    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"{name}: {limit} call(s) already running; try again")
        self.name, self.limit = name, limit


class ConcurrencyLimit:
    def __init__(self, name: str, limit: int, max_wait_s: float = 0.1) -> None:
        if limit < 1:
            raise ValueError(f"{name}: a concurrency limit must be at least 1, not {limit}")
        self.name, self.limit, self.max_wait_s = name, limit, max_wait_s
        self._free = asyncio.Semaphore(limit)
        self.running = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.max_wait_s):
                await self._free.acquire()
        except TimeoutError:
            raise LimitReached(self.name, self.limit) from None
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._free.release()
