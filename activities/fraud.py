"""The fraud check before payment: simple rules over the order and the customer's recent orders.

Read-only: it records nothing, so a retry asks again and may decide again;
the saga records the answer in its history. A refusal is final (FraudSuspected)
and the saga undoes what it did (the order only: the check runs before any
stock or money moves).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities._common import refusal
from db.tables import orders
from domain.activities import Act, CheckFraud, FraudCleared
from domain.errors import ErrorType


class FraudActivities:
    def __init__(self, engine: AsyncEngine, max_total: int, max_per_minute: int) -> None:
        self._engine = engine
        self._max_total = max_total
        self._max_per_minute = max_per_minute

    @activity.defn(name=Act.CHECK_FRAUD)
    async def check_fraud(self, cmd: CheckFraud) -> FraudCleared:
        if cmd.total > self._max_total:
            raise refusal(
                ErrorType.FRAUD_SUSPECTED,
                f"order total {cmd.total} {cmd.currency} is above the {self._max_total} "
                "that is accepted without review",
            )
        async with self._engine.connect() as conn:
            recent = await conn.scalar(
                select(func.count())
                .select_from(orders)
                .where(
                    orders.c.customer_id == cmd.customer_id,
                    orders.c.created_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 1),
                )
            )
        if int(recent or 0) > self._max_per_minute:
            raise refusal(
                ErrorType.FRAUD_SUSPECTED,
                f"customer placed {recent} orders in the last minute "
                f"(more than {self._max_per_minute})",
            )
        return FraudCleared(recent_orders=int(recent or 0))
