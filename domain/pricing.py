"""Pricing an order at catalogue prices: one pure function, for the API and create_order alike.

The API prices to validate a request before any saga starts (and to describe
it); create_order prices again in its own transaction, and what it records is
the order's price. Both go through `price_order`, so they cannot disagree on
how a total is made, only on when the catalogue was read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain.activities import PricedOrder
from domain.orders import OrderLine, PricedLine


@dataclass(frozen=True)
class CatalogPrice:
    price: int
    currency: str


class UnknownProducts(ValueError):
    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"unknown sku: {', '.join(skus)}")
        self.skus = skus


class MixedCurrencies(ValueError):
    def __init__(self) -> None:
        super().__init__("items are priced in different currencies")


def price_order(
    order_id: str, items: Sequence[OrderLine], catalog: Mapping[str, CatalogPrice]
) -> PricedOrder:
    """Each line at its sku's price; UnknownProducts (sorted, once each), MixedCurrencies."""
    missing = sorted({line.sku for line in items if line.sku not in catalog})
    if missing:
        raise UnknownProducts(missing)
    lines = [
        PricedLine(
            sku=line.sku,
            quantity=line.quantity,
            unit_price=catalog[line.sku].price,
            currency=catalog[line.sku].currency,
        )
        for line in items
    ]
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        raise MixedCurrencies()
    return PricedOrder(
        order_id=order_id,
        items=lines,
        total=sum(line.unit_price * line.quantity for line in lines),
        currency=currencies.pop(),
    )
