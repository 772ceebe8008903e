"""What the order saga reports about itself: to the query, to the API, in its result."""

from __future__ import annotations

from pydantic import BaseModel, Field

from domain.orders import OrderStatus, PricedLine
from domain.saga import CancelAccepted, SagaProgress
from domain.two_phase import Decision, TwoPhaseOutcome, Vote


class StepName:
    """Saga steps; with the workflow id they make the idempotency keys, so never rename one."""

    CREATE_ORDER = "create_order"
    CHECK_FRAUD = "check_fraud"
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    SETTLE_TWO_PHASE = "settle_two_phase"
    CREATE_SHIPMENT = "create_shipment"
    CONFIRM_ORDER = "confirm_order"


class TwoPhaseView(BaseModel):
    tx_id: str
    decision: Decision | None = None
    votes: dict[str, Vote] = Field(default_factory=dict)
    # "prepare" until the decision is logged, then "commit" or "abort" while
    # phase 2 carries it out, then "done"; None when nothing is known yet.
    phase: str | None = None
    acknowledged: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, outcome: TwoPhaseOutcome) -> TwoPhaseView:
        """What the coordinator's outcome (so far) shows of the transaction."""
        return cls(
            tx_id=outcome.tx_id,
            decision=outcome.decision,
            votes=outcome.votes,
            phase=outcome.phase,
            acknowledged=outcome.acknowledged,
        )


class SagaState(SagaProgress):
    order_id: str
    customer_id: str
    status: OrderStatus = OrderStatus.PENDING
    items: list[PricedLine] = Field(default_factory=list)
    total: int = 0
    currency: str | None = None
    two_phase: TwoPhaseView | None = None


class OrderCancelAccepted(CancelAccepted):
    order_id: str
