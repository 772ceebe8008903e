"""A running saga's progress as its committed steps wrote it, without asking the workflow.

Each step commits its idempotency key (`order-{id}:{step}`) in its service's
schema in the same transaction as its effect (db.unit_of_work), so a step
whose key is there has happened, and one whose key is not has not committed:
the step list read here is never behind what a client's earlier answers
showed (read-your-writes), and never ahead of what the databases hold.

What the keys cannot tell, and so what still needs the workflow (api.sagas):

- `check_fraud` writes nothing: it is counted done once a later step is.
  (Sagas started before the check existed never ran it; none can still be
  running, so this reads them as the check's patch does.)
- the saga's failure reason while it undoes its steps: an undo's key is
  there, the reason is not written until cancel_order records it.
- `current_step` is the step after the last one committed, where the step
  list names it (none right after create_order: the fraud check writes
  nothing, and stock-and-card or the 2PC may follow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from db.tables import service_tables
from db.unit_of_work import FENCED
from domain.activities import Act, TwoPhaseAct
from domain.order_saga import StepName
from domain.orders import workflow_id_for

# The forward steps in the order a saga runs them, with the schema each writes
# its key in (None: none, or its own rows rather than a key: 2PC's decision log).
FORWARD: tuple[tuple[str, str | None], ...] = (
    (StepName.CREATE_ORDER, "orders"),
    (StepName.CHECK_FRAUD, None),
    (StepName.RESERVE_STOCK, "inventory"),
    (StepName.CHARGE_PAYMENT, "payments"),
    (StepName.SETTLE_TWO_PHASE, None),
    (StepName.CREATE_SHIPMENT, "shipping"),
    (StepName.CONFIRM_ORDER, "orders"),
)
UNDOS: tuple[tuple[str, str], ...] = (
    (Act.CANCEL_SHIPMENT, "shipping"),
    (Act.REFUND_PAYMENT, "payments"),
    (TwoPhaseAct.REFUND_STORE_CREDIT, "payments"),
    (Act.RELEASE_STOCK, "inventory"),
    (Act.CANCEL_ORDER, "orders"),
)
# After create_order the keys cannot tell the next step: the fraud check
# writes none, and then stock and card, or the 2PC, follow; so no step is named.
_NEXT = {
    StepName.RESERVE_STOCK: StepName.CHARGE_PAYMENT,
    StepName.CHARGE_PAYMENT: StepName.CREATE_SHIPMENT,
    StepName.SETTLE_TWO_PHASE: StepName.CREATE_SHIPMENT,
    StepName.CREATE_SHIPMENT: StepName.CONFIRM_ORDER,
}


@dataclass(frozen=True)
class Progress:
    steps: list[str]
    current_step: str | None
    # An undo has committed (or fenced its step): the saga is compensating.
    undoing: bool


def _keyed(step: str, schema: str, workflow_id: str) -> Select[Any]:
    idem = service_tables[schema].idempotency
    return select(literal(step).label("step"), idem.c.result).where(
        idem.c.key == f"{workflow_id}:{step}"
    )


async def committed_progress(
    conn: AsyncConnection, order_id: str, settled_two_phase: bool
) -> Progress:
    """The steps whose keys are committed; `settled_two_phase`: the 2PC's decision
    log says COMMIT and every participant acknowledged it."""
    workflow_id = workflow_id_for(order_id)
    parts = [_keyed(step, schema, workflow_id) for step, schema in FORWARD if schema]
    parts += [_keyed(undo, schema, workflow_id) for undo, schema in UNDOS]
    # One round trip: each part is a primary-key lookup in its schema's keys.
    found = {row.step: row.result for row in await conn.execute(union_all(*parts))}
    undos = {undo for undo, _ in UNDOS}
    undoing = any(step in undos or result == FENCED for step, result in found.items())
    done = {step for step, result in found.items() if step not in undos and result != FENCED}
    if settled_two_phase:
        done.add(StepName.SETTLE_TWO_PHASE)
    if done - {StepName.CREATE_ORDER}:
        done.add(StepName.CHECK_FRAUD)
    steps = [step for step, _ in FORWARD if step in done]
    current = _NEXT.get(steps[-1]) if steps else StepName.CREATE_ORDER
    return Progress(steps=steps, current_step=current, undoing=undoing)
