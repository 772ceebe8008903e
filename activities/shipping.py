"""Shipping service: create the shipment, cancel it on compensation."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, update
from temporalio import activity

from activities._common import context, stable_id
from db.engine import SessionFactory
from db.tables import shipments
from db.unit_of_work import Step, apply_once
from domain.activities import (
    Act,
    CancelShipment,
    CreateShipment,
    ShipmentCancelled,
    ShipmentCreated,
)

SERVICE = "shipping"
AGGREGATE = "shipment"


def tracking_number_for(order_id: str) -> str:
    # 80 bits: a collision under the UNIQUE constraint would fail every retry.
    return "TRK" + hashlib.sha256(order_id.encode()).hexdigest()[:20].upper()


class ShippingActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=Act.CREATE_SHIPMENT)
    async def create_shipment(self, cmd: CreateShipment) -> ShipmentCreated:
        async def change(step: Step) -> ShipmentCreated:
            created = ShipmentCreated(
                shipment_id=stable_id(cmd.idempotency_key),
                tracking_number=tracking_number_for(cmd.order_id),
            )
            await step.session.execute(
                shipments.insert().values(
                    shipment_id=created.shipment_id,
                    order_id=cmd.order_id,
                    customer_id=cmd.customer_id,
                    tracking_number=created.tracking_number,
                    status="CREATED",
                )
            )
            payload = {"order_id": cmd.order_id, **created.model_dump()}
            step.record(AGGREGATE, cmd.order_id, "ShipmentCreated", payload)
            return created

        return await apply_once(self._sessions, context(SERVICE, cmd), change, ShipmentCreated)

    @activity.defn(name=Act.CANCEL_SHIPMENT)
    async def cancel_shipment(self, cmd: CancelShipment) -> ShipmentCancelled:
        async def change(step: Step) -> ShipmentCancelled:
            cancelled = (
                await step.session.execute(
                    update(shipments)
                    .where(shipments.c.order_id == cmd.order_id, shipments.c.status == "CREATED")
                    .values(status="CANCELLED", cancelled_at=func.now())
                    .returning(shipments.c.shipment_id)
                )
            ).first()
            if cancelled is not None:
                payload = {"order_id": cmd.order_id, "shipment_id": str(cancelled.shipment_id)}
                step.record(AGGREGATE, cmd.order_id, "ShipmentCancelled", payload)
            return ShipmentCancelled(cancelled=cancelled is not None)

        return await apply_once(
            self._sessions, context(SERVICE, cmd), change, ShipmentCancelled, fence=cmd.fences
        )
