"""Each service's reactions to the events of choreographed orders (domain.choreography).

A reaction runs the same activity the orchestrated saga calls, on the
consumer's connection: the inbox claim, the step's idempotency key, its rows
and its outbox events commit in one transaction. A refused forward step rolls
back to its savepoint and records the service's failure event instead; so
does one whose event can never be acted on (a token that does not decrypt
under the key it names, a missing total). A token sealed under a key this
process lacks is retried instead: another instance, or the next release,
may hold it. An event whose step reserves, charges or
ships, read after the order's deadline, is passed over: the orders service's
timeout cancels that order, and its OrderCancelled undoes what was done. (A
late ShipmentCreated still confirms: the order is then done, only late.)

Only inventory passes the card token on: every event from the charge on
carries the order without it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.exceptions import ApplicationError

from activities._common import context
from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.provider_client import PaymentProviderClient
from activities.provider_retry import ProviderRetry
from activities.shipping import ShippingActivities
from db.engine import SessionFactory, sessions_on
from db.unit_of_work import Step, apply_once, carried_headers
from domain.activities import (
    Act,
    CancelShipment,
    ChargePayment,
    CloseOrder,
    CreateShipment,
    RefundPayment,
    ReleaseStock,
    ReserveStock,
    StepInput,
)
from domain.choreography import (
    CARRIED_HEADER,
    FORWARD_STEPS,
    REACTIONS,
    Carried,
    Reaction,
    correlation_id_for,
    key_for,
)
from domain.errors import ErrorType
from domain.order_saga import StepName
from messaging.wire import Envelope
from security.sealed import Sealer

log = logging.getLogger(__name__)

Run = Callable[[SessionFactory], Awaitable[object]]


def carried_of(envelope: Envelope) -> Carried | None:
    """The order's facts; None for an orchestrated order's event.

    A ValidationError when the header is there but this release cannot read it.
    """
    raw = envelope.headers.get(CARRIED_HEADER)
    return Carried.model_validate(raw) if raw is not None else None


def is_choreographed(envelope: Envelope) -> bool:
    return CARRIED_HEADER in envelope.headers


def keys(order_id: str, step: str, fences: str | None = None) -> dict[str, Any]:
    return {
        "idempotency_key": key_for(order_id, step),
        "order_id": order_id,
        "correlation_id": correlation_id_for(order_id),
        "fences": key_for(order_id, fences) if fences else None,
    }


@dataclass
class Reactions:
    """What one process needs to run any service's reactions."""

    provider: PaymentProviderClient
    retry: ProviderRetry
    sealer: Sealer

    def handler(self, service: str) -> Callable[[AsyncConnection, Envelope], Awaitable[None]]:
        """The handler of `service`'s consumer: dispatch by event to its reactions."""
        table = {(r.aggregate, r.event): r for r in REACTIONS if r.service == service}

        async def handle(conn: AsyncConnection, envelope: Envelope) -> None:
            reaction = table.get((envelope.aggregate_type, envelope.event_type))
            if reaction is None:
                return
            try:
                carried = carried_of(envelope)
            except ValidationError as err:
                if reaction.on_refusal is None:
                    # An undo or a close must end done: redelivered until a
                    # release that reads this header runs.
                    raise
                # A forward step: dropped loudly; the timeout undoes the order.
                log.error(
                    "event %s: unreadable %s header: %s", envelope.event_id, CARRIED_HEADER, err
                )
                return
            if carried is not None:
                await self.react(conn, reaction, envelope, carried)

        return handle

    async def react(
        self, conn: AsyncConnection, reaction: Reaction, envelope: Envelope, carried: Carried
    ) -> None:
        if reaction.on_refusal is not None and carried.expired():
            log.info(
                "%s: %s of order %s read after its deadline; not applied",
                reaction.service,
                envelope.event_type,
                carried.order_id,
            )
            return
        if reaction.event == "OrderCreated":
            # Priced by the orders service: the total travels on from here.
            carried = carried.model_copy(
                update={
                    "total": envelope.payload["total"],
                    "currency": envelope.payload["currency"],
                }
            )
        without_token = carried.model_copy(update={"payment_token": ""})
        # Only a reservation passes the token on, to payments.
        onward = carried if reaction.step == Act.RESERVE_STOCK else without_token
        try:
            run = self._step(reaction.step, carried, envelope)
        except ValueError as err:
            if reaction.on_refusal is None:
                raise
            unusable = ApplicationError(str(err), type=ErrorType.INVALID_ORDER, non_retryable=True)
            await _record_refusal(conn, reaction, without_token, unusable)
            return
        with carried_headers({CARRIED_HEADER: onward.model_dump(mode="json")}):
            try:
                await run(sessions_on(conn))
            except ApplicationError as err:
                if err.type == ErrorType.STEP_FENCED:
                    return  # undone before it could apply: the order was cancelled
                if reaction.on_refusal is None or not err.non_retryable:
                    raise
                await _record_refusal(conn, reaction, without_token, err)

    def _step(self, step: str, carried: Carried, envelope: Envelope) -> Run:
        order_id = carried.order_id
        match step:
            case Act.RESERVE_STOCK:
                reserve = ReserveStock(**keys(order_id, step), items=carried.items)
                return lambda s: InventoryActivities(s).reserve_stock(reserve)
            case Act.CHARGE_PAYMENT:
                charge = ChargePayment(
                    **keys(order_id, step),
                    customer_id=carried.customer_id,
                    amount=_known(carried.total, "total"),
                    currency=_known(carried.currency, "currency"),
                    # Sealed: the charge opens it just before calling the provider.
                    payment_token=carried.payment_token,
                )
                return lambda s: self._payments(s).charge_payment(charge)
            case Act.CREATE_SHIPMENT:
                ship = CreateShipment(
                    **keys(order_id, step), customer_id=carried.customer_id, items=carried.items
                )
                return lambda s: ShippingActivities(s).create_shipment(ship)
            case Act.CONFIRM_ORDER:
                confirm = CloseOrder(**keys(order_id, step), steps=list(FORWARD_STEPS))
                return lambda s: OrderActivities(s).confirm_order(confirm)
            case Act.CANCEL_ORDER:
                cancel = cancel_command(order_id, str(envelope.payload.get("reason", "")))
                return lambda s: OrderActivities(s).cancel_order(cancel)
            case Act.RELEASE_STOCK:
                release = ReleaseStock(**keys(order_id, step, fences=Act.RESERVE_STOCK))
                return lambda s: InventoryActivities(s).release_stock(release)
            case Act.REFUND_PAYMENT:
                refund = RefundPayment(**keys(order_id, step, fences=Act.CHARGE_PAYMENT))
                return lambda s: self._payments(s).refund_payment(refund)
            case Act.CANCEL_SHIPMENT:
                unship = CancelShipment(**keys(order_id, step, fences=Act.CREATE_SHIPMENT))
                return lambda s: ShippingActivities(s).cancel_shipment(unship)
        raise ValueError(f"no reaction runs {step}")

    def _payments(self, sessions: SessionFactory) -> PaymentActivities:
        return PaymentActivities(sessions, self.provider, self.retry, self.sealer)


def cancel_command(order_id: str, reason: str) -> CloseOrder:
    """The one cancel of a choreographed order, whoever asks (a failure, the timeout, the client).

    One key for all three: the first cancel applies with its reason; the
    others find it done. The fence on create_order is the orchestrated
    cancel's, kept so both modes close an order alike; here the order always
    exists by the time anyone cancels it.
    """
    return CloseOrder(
        **keys(order_id, Act.CANCEL_ORDER, fences=StepName.CREATE_ORDER),
        steps=[StepName.CREATE_ORDER],
        compensations=[Act.CANCEL_ORDER],
        failure_reason=reason or "cancelled",
    )


class _Refused(BaseModel):
    event: str


async def _record_refusal(
    conn: AsyncConnection, reaction: Reaction, carried: Carried, err: ApplicationError
) -> None:
    """The service's failure event, once per order (its own idempotency key)."""
    assert reaction.on_refusal is not None
    event = reaction.on_refusal
    step_input = StepInput(**keys(carried.order_id, f"{reaction.step}:refused"))
    payload = {
        "order_id": carried.order_id,
        "step": reaction.step,
        "error_type": err.type,
        "reason": err.message,
    }
    aggregate = {"inventory": "reservation", "payments": "payment", "shipping": "shipment"}

    async def change(step: Step) -> _Refused:
        step.record(aggregate[reaction.service], carried.order_id, event, payload)
        return _Refused(event=event)

    with carried_headers({CARRIED_HEADER: carried.model_dump(mode="json")}):
        await apply_once(sessions_on(conn), context(reaction.service, step_input), change, _Refused)
    log.info(
        "%s: %s refused for order %s: %s",
        reaction.service,
        reaction.step,
        carried.order_id,
        err.message,
    )


def _known(value: Any, name: str) -> Any:
    if value is None:
        raise ValueError(f"the order's {name} did not travel with its events")
    return value
