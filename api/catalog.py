"""The catalogue's prices as the API prices requests: kept in the process, read on a miss.

An order's request is checked before any saga starts: every sku known, and,
when the split of the payment depends on it, the total. Reading the catalogue
for every POST was most of the API's cost per order, so prices are kept here
for `api_price_cache_s` seconds. What this may and may not answer:

- a sku absent here, or kept too long, is read from PostgreSQL before
  anything is decided: a product added a moment ago is known, and an unknown
  sku is refused only after the database said so (nothing unknown is kept);
- a total the request is validated against (store credit, or no card token)
  is always priced at the catalogue's prices of now, read for that request;
- a price changed in the catalogue shows in the total the API describes the
  order with (its workflow's summary) within `api_price_cache_s`. The price
  the order is charged is never the API's: create_order prices it again in
  its own transaction, with the same function (domain.pricing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from db.catalog import catalog_prices
from domain.pricing import CatalogPrice


class PriceCache:
    def __init__(
        self, engine: AsyncEngine, keep_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._keep_s = keep_s
        self._clock = clock
        self._kept: dict[str, tuple[float, CatalogPrice]] = {}

    async def prices(self, skus: Iterable[str]) -> dict[str, CatalogPrice]:
        """The catalogue's price of each sku it has, kept or read; unknown skus are absent."""
        now = self._clock()
        wanted = set(skus)
        found: dict[str, CatalogPrice] = {}
        for sku in wanted:
            kept = self._kept.get(sku)
            if kept is not None and now - kept[0] < self._keep_s:
                found[sku] = kept[1]
        missing = wanted - found.keys()
        if missing:
            found.update(await self.current(missing))
        return found

    async def current(self, skus: Iterable[str]) -> dict[str, CatalogPrice]:
        """The catalogue's prices as PostgreSQL has them now (and kept from now on)."""
        async with self._engine.connect() as conn:
            read = await catalog_prices(conn, skus)
        now = self._clock()
        self._kept.update((sku, (now, price)) for sku, price in read.items())
        return read
