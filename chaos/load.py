"""The chaos run's clients: each places orders one after another, through the API,
until told to stop or until the run has placed as many as it was asked to."""

from __future__ import annotations

import asyncio
import random

from bench.orders import Kind, Mix, OrderClient, Outcome


class Load:
    """Clients placing orders one after another until told to stop, or until
    `limit` orders have been begun."""

    def __init__(
        self, orders: OrderClient, mix: Mix, rng: random.Random, limit: int | None = None
    ) -> None:
        self._orders, self._mix, self._rng, self._limit = orders, mix, rng, limit
        self.outcomes: list[Outcome] = []
        self.in_flight = 0
        self.begun = 0

    async def run(self, clients: int, stop: asyncio.Event) -> list[Outcome]:
        await asyncio.gather(*(self._client(stop) for _ in range(clients)))
        return self.outcomes

    async def _client(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and (self._limit is None or self.begun < self._limit):
            kind: Kind = self._mix.draw(self._rng)
            self.begun += 1
            self.in_flight += 1
            try:
                self.outcomes.append(await self._orders.run(kind))
            finally:
                self.in_flight -= 1

    def progress(self) -> str:
        ended = len(self.outcomes)
        of = f" of {self._limit}" if self._limit is not None else ""
        return f"{ended}{of} orders ended, {self.in_flight} in flight"
