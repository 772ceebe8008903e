"""domain.pricing: the one way an order is priced, by the API and by create_order;
and domain.order_summary, the words its saga is listed with."""

from __future__ import annotations

import pytest

from domain.order_summary import MAX_BYTES, TIMES, clip, money, order_summary
from domain.orders import OrderLine, PlaceOrder
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


def test_the_summary_names_lines_customer_total_and_payment():
    order = PlaceOrder(
        order_id="o-4",
        customer_id="cust-17",
        items=[OrderLine(sku="B", quantity=2)],
        payment_token="sealed:t1:secret",
    )
    priced = price_order(order.order_id, order.items, {"B": CatalogPrice(990, "EUR")})

    summary = order_summary(order, priced)

    assert summary == f"2 {TIMES} B for cust-17, €19.80, card"
    assert "sealed" not in summary and "secret" not in summary


def test_the_summary_says_what_store_credit_pays_and_how_many_lines_it_leaves_out():
    items = [OrderLine(sku=s, quantity=1) for s in ("A", "B", "A2", "B2", "A3")]
    catalog = {line.sku: CatalogPrice(1000, "USD") for line in items}
    order = PlaceOrder(order_id="o-5", customer_id="c", items=items, store_credit=1250)

    summary = order_summary(order, price_order("o-5", items, catalog))

    assert summary == (
        f"1 {TIMES} A, 1 {TIMES} B, 1 {TIMES} A2 and 2 more line(s) for c, $50.00,"
        " card + $12.50 store credit"
    )
    assert money(1980, "CHF") == "19.80 CHF" and money(500, "JPY") == "500 JPY"


def test_a_summary_too_long_for_the_visibility_store_is_cut_whole_characters_and_all():
    items = [OrderLine(sku="S" * 64, quantity=999) for _ in range(3)]
    catalog = {"S" * 64: CatalogPrice(10**9, "EUR")}
    customer = "ü" * 100  # two bytes each in UTF-8
    order = PlaceOrder(order_id="o-6", customer_id=customer, items=items, payment_token="t")

    summary = order_summary(order, price_order("o-6", items, catalog))

    assert len(summary.encode()) <= MAX_BYTES  # VARCHAR(255) in Temporal's PostgreSQL store
    assert summary.startswith(f"999 {TIMES} {'S' * 64}") and summary.endswith(
        "\N{HORIZONTAL ELLIPSIS}"
    )
    assert clip("short") == "short"
    assert clip("ü" * 10, max_bytes=8) == "ü" * 2 + "\N{HORIZONTAL ELLIPSIS}"
