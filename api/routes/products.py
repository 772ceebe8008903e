"""The catalog, as inventory holds it."""

from __future__ import annotations

from fastapi import APIRouter

from api import queries
from api.deps import EngineDep
from api.roles import READERS
from api.schemas import Product

router = APIRouter(prefix="/products", tags=["products"])


@router.get(
    "",
    dependencies=READERS,
    response_model=list[Product],
    summary="List products with the units free to sell",
)
async def list_products(engine: EngineDep) -> list[Product]:
    return await queries.list_products(engine)
