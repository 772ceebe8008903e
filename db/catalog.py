"""The catalogue's prices as pricing reads them (domain.pricing)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.tables import products
from domain.pricing import CatalogPrice


async def catalog_prices(
    db: AsyncConnection | AsyncSession, skus: Iterable[str]
) -> dict[str, CatalogPrice]:
    """The price of each sku the catalogue has; unknown skus are absent."""
    rows = await db.execute(
        select(products.c.sku, products.c.price, products.c.currency).where(
            products.c.sku.in_(sorted(set(skus)))
        )
    )
    return {r.sku: CatalogPrice(price=int(r.price), currency=r.currency) for r in rows}
