"""What the order routes (orders, returns) answer about an order id or a body field."""

from __future__ import annotations

import re

from api.problems import Problem
from api.schemas import PRINTABLE

MAX_ORDER_ID = 64
_ORDER_ID = re.compile(PRINTABLE)
# Seconds a client should wait before asking again when the saga did not answer.
RETRY_AFTER = "2"


def order_not_found(order_id: str) -> Problem:
    return Problem(404, "Order not found", f"no order {order_id}", code="order-not-found")


def check_order_id(order_id: str) -> None:
    # No order has such an id, so it is not found: nothing to query for it.
    if len(order_id) > MAX_ORDER_ID or not _ORDER_ID.match(order_id):
        raise order_not_found(order_id)


def invalid_field(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Invalid request",
        f"invalid: {field}",
        code="validation",
        errors=[{"field": field, "message": message}],
    )


def unavailable(detail: str) -> Problem:
    return Problem(
        503,
        "Service unavailable",
        detail,
        code="saga-unavailable",
        headers={"Retry-After": RETRY_AFTER},
    )
