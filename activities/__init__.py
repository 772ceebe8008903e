"""Activities: each one local transaction in its service's schema (see db.unit_of_work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.shipping import ShippingActivities
from db.engine import SessionFactory
from domain.activities import Act


def all_activities(sessions: SessionFactory) -> dict[str, Callable[..., Any]]:
    """Every activity the order saga calls by name, bound to one session factory.

    Keyed by activity name so a test can swap one for a stand-in of the same name.
    """
    orders = OrderActivities(sessions)
    inventory = InventoryActivities(sessions)
    payments = PaymentActivities(sessions)
    shipping = ShippingActivities(sessions)
    return {
        Act.CREATE_ORDER: orders.create_order,
        Act.CONFIRM_ORDER: orders.confirm_order,
        Act.CANCEL_ORDER: orders.cancel_order,
        Act.RESERVE_STOCK: inventory.reserve_stock,
        Act.RELEASE_STOCK: inventory.release_stock,
        Act.CHARGE_PAYMENT: payments.charge_payment,
        Act.REFUND_PAYMENT: payments.refund_payment,
        Act.CREATE_SHIPMENT: shipping.create_shipment,
        Act.CANCEL_SHIPMENT: shipping.cancel_shipment,
    }
