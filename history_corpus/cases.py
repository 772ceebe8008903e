"""The saga paths the corpus holds: each drives real workers to one outcome.

A case returns the workflows it produced, each under the corpus name its
history is saved as. Faults come from the payment provider simulator; a
refusal no real service makes on demand (shipping) from a stand-in activity
on workers of the case's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from db.tables import decisions, products
from db.wallet_store import WalletStore
from domain.activities import Act, CreateShipment, ShipmentCreated, TwoPhaseAct
from domain.errors import ErrorType
from domain.order_saga import SagaState
from domain.orders import OrderLine, PlaceOrder, workflow_id_for
from domain.returns import ReturnLine, ReturnState, StartReturn, return_workflow_id
from domain.saga import WORKFLOW_TASK_TIMEOUT, CancelRequest
from domain.two_phase import coordinator_workflow_id

Produced = list[tuple[str, WorkflowHandle[Any, Any]]]


@dataclass
class Stage:
    client: Client
    engine: AsyncEngine
    provider: httpx.AsyncClient  # the simulator, for faults
    queue: str
    start_workers: Callable[[dict[str, Callable[..., Any]]], Awaitable[str]]

    async def product(self, stock: int = 10, price: int = 1500) -> str:
        sku = f"REC-{uuid.uuid4().hex[:8].upper()}"
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(products).values(
                    sku=sku, name=f"recorded {sku}", price=price, currency="EUR", stock=stock
                )
            )
        return sku

    async def wallet(self, balance: int) -> str:
        customer = f"rec-{uuid.uuid4().hex[:8]}"
        async with self.engine.begin() as conn:
            await WalletStore().open_with(conn, customer, balance)
        return customer

    async def order(
        self, sku: str, *, queue: str | None = None, **fields: Any
    ) -> WorkflowHandle[Any, Any]:
        order = PlaceOrder(
            order_id=str(uuid.uuid4()),
            customer_id=fields.pop("customer_id", f"rec-{uuid.uuid4().hex[:8]}"),
            items=[OrderLine(sku=sku, quantity=fields.pop("quantity", 1))],
            payment_token=fields.pop("payment_token", "tok_visa"),
            **fields,
        )
        return await self.client.start_workflow(
            "OrderSaga",
            order,
            id=workflow_id_for(order.order_id),
            task_queue=queue or self.queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            result_type=SagaState,
        )

    async def fault(self, **spec: Any) -> None:
        (await self.provider.post("/admin/faults", json=spec)).raise_for_status()

    async def at_step(self, handle: WorkflowHandle[Any, Any], step: str) -> None:
        async def reached() -> bool:
            state: SagaState = await handle.query("state", result_type=SagaState)
            return state.current_step == step

        await self.until(reached, f"{handle.id} never reached {step}")

    async def until(self, holds: Callable[[], Awaitable[bool]], failure: str) -> None:
        for _ in range(400):
            if await holds():
                return
            await asyncio.sleep(0.025)
        raise TimeoutError(failure)

    async def committed(self, tx_id: str) -> bool:
        """COMMIT logged and every XA branch committed (none left prepared)."""
        async with self.engine.connect() as conn:
            logged = await conn.scalar(
                select(decisions.c.decision).where(decisions.c.tx_id == tx_id)
            )
            prepared = await conn.scalar(
                text("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE :p"),
                {"p": f"tpc:{tx_id}:%"},
            )
        return bool(logged == "COMMIT" and prepared == 0)


async def confirmed(stage: Stage) -> Produced:
    return [("order_saga/confirmed", await stage.order(await stage.product(), quantity=2))]


async def out_of_stock(stage: Stage) -> Produced:
    handle = await stage.order(await stage.product(stock=1), quantity=2)
    return [("order_saga/out_of_stock", handle)]


async def payment_declined(stage: Stage) -> Produced:
    handle = await stage.order(await stage.product(), payment_token="tok_decline")
    return [("order_saga/payment_declined", handle)]


async def fraud_suspected(stage: Stage) -> Produced:
    # Above the default SAGA_FRAUD_MAX_ORDER_TOTAL: refused before stock or money moves.
    handle = await stage.order(await stage.product(price=600_000), quantity=2)
    return [("order_saga/fraud_suspected", handle)]


async def provider_retried(stage: Stage) -> Produced:
    await stage.fault(status=503, count=2)
    return [("order_saga/provider_retried", await stage.order(await stage.product()))]


async def payment_unavailable(stage: Stage) -> Produced:
    # Down past the charge's deadline (the recorder's is 2 s): the saga gives up
    # and compensates; the refund waits for the provider to be back to ask it.
    await stage.fault(mode="down", for_seconds=3)
    return [("order_saga/payment_unavailable", await stage.order(await stage.product()))]


async def shipping_refused(stage: Stage) -> Produced:
    @activity.defn(name=Act.CREATE_SHIPMENT)
    async def refuse(cmd: CreateShipment) -> ShipmentCreated:
        raise ApplicationError(
            "no carrier serves this address", type=ErrorType.SHIPPING_REFUSED, non_retryable=True
        )

    queue = await stage.start_workers({Act.CREATE_SHIPMENT: refuse})
    handle = await stage.order(await stage.product(), queue=queue)
    return [("order_saga/shipping_refused", handle)]


async def cancelled_by_update(stage: Stage) -> Produced:
    # A slow authorization holds the saga in charge_payment while the cancel lands.
    await stage.fault(mode="latency", seconds=1.5, count=1, path_contains="/v1/authorizations")
    handle = await stage.order(await stage.product())
    await stage.at_step(handle, Act.CHARGE_PAYMENT)
    await handle.execute_update("cancel", CancelRequest(reason="customer changed their mind"))
    return [("order_saga/cancelled_by_update", handle)]


async def cancelled_by_request(stage: Stage) -> Produced:
    await stage.fault(mode="latency", seconds=1.5, count=1, path_contains="/v1/authorizations")
    handle = await stage.order(await stage.product())
    await stage.at_step(handle, Act.CHARGE_PAYMENT)
    await handle.cancel()
    return [("order_saga/cancelled_by_request", handle)]


async def two_phase_committed(stage: Stage) -> Produced:
    return await _store_credit_order(stage, wallet=1000, outcome="committed")


async def two_phase_aborted(stage: Stage) -> Produced:
    # 700 of credit from a wallet holding 100: the wallet votes no.
    return await _store_credit_order(stage, wallet=100, outcome="aborted")


async def _store_credit_order(stage: Stage, wallet: int, outcome: str) -> Produced:
    customer = await stage.wallet(balance=wallet)
    handle = await stage.order(
        await stage.product(price=1500), customer_id=customer, store_credit=700
    )
    return [
        (f"order_saga/two_phase_{outcome}", handle),
        (f"two_phase_commit/{outcome}", _coordinator(stage, handle)),
    ]


async def cancelled_while_resolving(stage: Stage) -> Produced:
    # The coordinator committed stock and credit and retries the capture (503);
    # terminated, it leaves the saga to resolve the 2PC itself, and the cancel
    # lands while that resolution backs off on the capture.
    await stage.fault(status=503, path_contains="/capture")
    customer = await stage.wallet(balance=1000)
    handle = await stage.order(
        await stage.product(price=1500), customer_id=customer, store_credit=700
    )
    order_id = handle.id.removeprefix("order-")
    await stage.until(lambda: stage.committed(order_id), f"{order_id} never committed")
    await _coordinator(stage, handle).terminate("operator: coordinator stuck on the capture")

    async def resolving() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(
            p.activity_type.name == TwoPhaseAct.RESOLVE_TRANSACTION and p.attempt >= 2
            for p in pending
        )

    await stage.until(resolving, f"{handle.id} never retried resolve_transaction")
    await handle.execute_update("cancel", CancelRequest(reason="customer changed their mind"))
    await stage.provider.delete("/admin/faults")
    return [("order_saga/cancelled_while_resolving", handle)]


async def return_closed(stage: Stage) -> Produced:
    return [("return_saga/return_closed", await _returned(stage))]


async def return_refund_refused(stage: Stage) -> Produced:
    await stage.fault(status=409, count=1, path_contains="/v1/refunds")
    return [("return_saga/return_refund_refused", await _returned(stage))]


async def _returned(stage: Stage) -> WorkflowHandle[Any, Any]:
    """A confirmed order of two units, and a ReturnSaga taking one back."""
    order = await stage.order(await stage.product(), quantity=2)
    placed: SagaState = await order.result()
    request = StartReturn(
        return_id=str(uuid.uuid4()),
        order_id=placed.order_id,
        customer_id=placed.customer_id,
        lines=[ReturnLine(sku=placed.items[0].sku, quantity=1)],
    )
    return await stage.client.start_workflow(
        "ReturnSaga",
        request,
        id=return_workflow_id(request.return_id),
        task_queue=stage.queue,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        result_type=ReturnState,
    )


def _coordinator(stage: Stage, saga: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
    order_id = saga.id.removeprefix("order-")
    return stage.client.get_workflow_handle(coordinator_workflow_id(order_id))


CASES: dict[str, Callable[[Stage], Awaitable[Produced]]] = {
    case.__name__: case
    for case in (
        confirmed,
        out_of_stock,
        payment_declined,
        fraud_suspected,
        provider_retried,
        payment_unavailable,
        shipping_refused,
        cancelled_by_update,
        cancelled_by_request,
        two_phase_committed,
        two_phase_aborted,
        cancelled_while_resolving,
        return_closed,
        return_refund_refused,
    )
}
