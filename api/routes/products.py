"""The catalog, as inventory holds it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api import paging, queries
from api.deps import EngineDep
from api.roles import READERS
from api.schemas import Product

router = APIRouter(prefix="/products", tags=["products"])


@router.get(
    "",
    dependencies=READERS,
    response_model=list[Product],
    summary="List products with the units free to sell, by sku",
    responses={200: {"headers": paging.NEXT_PAGE}},
)
async def list_products(
    request: Request,
    response: Response,
    engine: EngineDep,
    limit: paging.ProductsLimit = paging.PRODUCTS_DEFAULT,
    after: paging.ProductsAfter = None,
) -> list[Product]:
    found = await queries.list_products(engine, paging.sku_key(after), limit + 1)
    return paging.page(request, response, found, limit, lambda p: (p.sku,))
