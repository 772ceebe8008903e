"""domain.pricing: the one way an order is priced, by the API and by create_order."""

from __future__ import annotations

import pytest

from domain.orders import OrderLine
from domain.pricing import CatalogPrice, MixedCurrencies, UnknownProducts, price_order

CATALOG = {
    "A": CatalogPrice(price=250, currency="EUR"),
    "B": CatalogPrice(price=1000, currency="EUR"),
    "U": CatalogPrice(price=99, currency="USD"),
}


def test_each_line_at_its_price_and_the_total_their_sum():
    priced = price_order(
        "o-1", [OrderLine(sku="A", quantity=3), OrderLine(sku="B", quantity=1)], CATALOG
    )

    assert (priced.order_id, priced.total, priced.currency) == ("o-1", 1750, "EUR")
    assert [(line.sku, line.unit_price, line.quantity) for line in priced.items] == [
        ("A", 250, 3),
        ("B", 1000, 1),
    ]


def test_unknown_skus_are_named_once_each_in_order():
    items = [OrderLine(sku=s, quantity=1) for s in ("Z", "A", "Y", "Z")]

    with pytest.raises(UnknownProducts) as refused:
        price_order("o-2", items, CATALOG)

    assert refused.value.skus == ["Y", "Z"]


def test_lines_in_two_currencies_are_refused():
    with pytest.raises(MixedCurrencies):
        price_order(
            "o-3", [OrderLine(sku="A", quantity=1), OrderLine(sku="U", quantity=1)], CATALOG
        )
