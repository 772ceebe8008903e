"""One line that says what an order is: its saga's summary in Temporal's list of workflows.

Like "2 (U+00D7) CB-005 for cust-17, €19.80, card". Only what the list may
show anyone who can see the workflow list: lines, customer, total and how it
is paid; never the card token or anything sealed.
"""

from __future__ import annotations

from domain.activities import PricedOrder
from domain.orders import PlaceOrder

TIMES = "\N{MULTIPLICATION SIGN}"
# Lines named before "and N more": the Web UI shows one line per workflow.
SHOWN_LINES = 3
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
# Minor units per major unit, where it is not 100 (ISO 4217 exponents).
_EXPONENTS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}


def money(minor_units: int, currency: str) -> str:
    """`€19.80` for 1980 EUR; `19.80 CHF` for a currency without a symbol here."""
    exponent = _EXPONENTS.get(currency, 2)
    major = f"{minor_units / 10**exponent:,.{exponent}f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{major}" if symbol else f"{major} {currency}"


# Temporal's PostgreSQL visibility keeps a Keyword search attribute in a
# VARCHAR(255), and a static summary may hold 400 bytes: a summary longer than
# this is cut (long skus and customer ids can make one).
MAX_BYTES = 250
ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


def order_summary(order: PlaceOrder, priced: PricedOrder) -> str:
    lines = [f"{line.quantity} {TIMES} {line.sku}" for line in order.items[:SHOWN_LINES]]
    more = len(order.items) - SHOWN_LINES
    what = ", ".join(lines) + (f" and {more} more line(s)" if more > 0 else "")
    total = money(priced.total, priced.currency)
    return clip(f"{what} for {order.customer_id}, {total}, {_paid(order, priced)}")


def clip(text: str, max_bytes: int = MAX_BYTES) -> str:
    """`text` whole if it fits in `max_bytes` of UTF-8, else cut with an ellipsis."""
    if len(text.encode()) <= max_bytes:
        return text
    room = max_bytes - len(ELLIPSIS.encode())
    return text.encode()[:room].decode(errors="ignore") + ELLIPSIS


def _paid(order: PlaceOrder, priced: PricedOrder) -> str:
    if order.store_credit <= 0:
        return "card"
    if order.store_credit >= priced.total:
        return "store credit"
    return f"card + {money(order.store_credit, priced.currency)} store credit"
