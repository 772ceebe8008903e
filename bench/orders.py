"""Orders through the HTTP API as a client would send them, with a chosen mix of endings.

Shared by the load benchmark and the chaos run. Each order carries its own
Idempotency-Key, so a POST retried after a dropped connection or a 5xx (a
server restarting) starts the order once. The end of an order is its saga's
result in Temporal; its outcome is what `GET /orders/{id}` then reports.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from db.tables import products
from domain.orders import workflow_id_for

PRICE = 1000


class Kind(StrEnum):
    """What the client means the order to do; the saga decides how it ends."""

    CONFIRM = "confirm"
    DECLINE = "decline"  # the provider refuses the card
    OUT_OF_STOCK = "out_of_stock"
    CANCEL = "cancel"  # the client cancels it soon after placing it
    STORE_CREDIT = "store_credit"  # half from the wallet: settled by 2PC


@dataclass(frozen=True)
class Mix:
    """Fractions of orders of each refusing kind; the rest are meant to confirm."""

    declined: float = 0.0
    out_of_stock: float = 0.0
    cancelled: float = 0.0
    store_credit: float = 0.0

    def __post_init__(self) -> None:
        if any(p < 0 for p in self._parts().values()) or sum(self._parts().values()) > 1:
            raise ValueError("the mix's fractions must be >= 0 and sum to at most 1")

    def _parts(self) -> dict[Kind, float]:
        return {
            Kind.DECLINE: self.declined,
            Kind.OUT_OF_STOCK: self.out_of_stock,
            Kind.CANCEL: self.cancelled,
            Kind.STORE_CREDIT: self.store_credit,
        }

    def plan(self, orders: int, rng: random.Random) -> list[Kind]:
        """Exactly round(fraction * orders) of each kind, shuffled."""
        kinds = [kind for kind, part in self._parts().items() for _ in range(round(part * orders))]
        kinds = kinds[:orders] + [Kind.CONFIRM] * max(0, orders - len(kinds))
        rng.shuffle(kinds)
        return kinds

    def draw(self, rng: random.Random) -> Kind:
        """One kind at random, in the mix's proportions (for load without a fixed count)."""
        point = rng.random()
        for kind, part in self._parts().items():
            if point < part:
                return kind
            point -= part
        return Kind.CONFIRM


@dataclass
class Outcome:
    kind: Kind
    order_id: str | None = None
    status: str = "NOT_PLACED"  # CONFIRMED, CANCELLED, or why it never got there
    reason: str | None = None
    latency_ms: float = 0.0
    retries: int = 0  # requests repeated after a transport error or a 5xx
    ended_at: float = 0.0  # perf_counter
    mode: str = "orchestration"


@dataclass
class Catalog:
    sku: str
    scarce_sku: str  # no stock: orders for it end OUT_OF_STOCK


async def seed_catalog(engine: AsyncEngine, orders: int) -> Catalog:
    tag = uuid.uuid4().hex[:6]
    catalog = Catalog(sku=f"LOAD-{tag}", scarce_sku=f"LOAD-{tag}-GONE")
    async with engine.begin() as conn:
        await conn.execute(
            products.insert(),
            [
                {"sku": catalog.sku, "name": "load", "price": PRICE, "currency": "EUR",
                 "stock": orders * 2},
                {"sku": catalog.scarce_sku, "name": "gone", "price": PRICE, "currency": "EUR",
                 "stock": 0},
            ],
        )  # fmt: skip
    return catalog


@dataclass
class OrderClient:
    """Places one order and follows it to its end, riding out restarts until `patience_s`."""

    http: httpx.AsyncClient  # base_url = the API
    temporal: Client
    catalog: Catalog
    patience_s: float = 60.0
    cancel_within_s: float = 0.3
    rng: random.Random = field(default_factory=random.Random)
    # The share of card-only orders sent with "mode": "choreography".
    choreography: float = 0.0

    async def run(self, kind: Kind) -> Outcome:
        outcome = Outcome(kind)
        started = time.perf_counter()
        key = f"load-{uuid.uuid4()}"
        customer = f"load-{key[-12:]}"
        body: dict[str, Any] = {
            "customer_id": customer,
            "items": [{"sku": self._sku(kind), "quantity": 1}],
            "payment_token": "tok_decline" if kind is Kind.DECLINE else "tok_visa",
        }
        if kind is Kind.STORE_CREDIT:
            credit = {"amount": PRICE // 2}
            topped = await self._request(
                outcome, "POST", f"/wallets/{customer}/credits", json=credit,
                headers={"Idempotency-Key": f"{key}-credit"},
            )  # fmt: skip
            if topped is None or topped.status_code >= 400:
                outcome.status = "NOT_PLACED"
                return outcome
            body["store_credit"] = PRICE // 2
        elif self.rng.random() < self.choreography:
            outcome.mode = body["mode"] = "choreography"
        placed = await self._request(
            outcome, "POST", "/orders", json=body, headers={"Idempotency-Key": key}
        )
        if placed is None or placed.status_code >= 400:
            outcome.status = "REJECTED" if placed is not None else "NOT_PLACED"
            outcome.reason = placed.text[:200] if placed is not None else outcome.reason
            return outcome
        outcome.order_id = str(placed.json()["order_id"])
        if kind is Kind.CANCEL:
            await asyncio.sleep(self.rng.uniform(0, self.cancel_within_s))
            # 409: it ended before the cancellation arrived; either way it ends.
            await self._request(outcome, "POST", f"/orders/{outcome.order_id}/cancel")
        ended = (
            await self._closed(outcome, outcome.order_id)
            if outcome.mode == "choreography"
            else await self._saga_ended(outcome.order_id)
        )
        if not ended:
            outcome.status, outcome.reason = "UNFINISHED", "saga still open"
            return outcome
        outcome.latency_ms = (time.perf_counter() - started) * 1000
        outcome.ended_at = time.perf_counter()
        seen = await self._request(outcome, "GET", f"/orders/{outcome.order_id}")
        if seen is not None and seen.status_code == 200:
            view = seen.json()
            outcome.status, outcome.reason = view["status"], view["failure_reason"]
        return outcome

    def _sku(self, kind: Kind) -> str:
        return self.catalog.scarce_sku if kind is Kind.OUT_OF_STOCK else self.catalog.sku

    async def _request(
        self, outcome: Outcome, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """The answer, retried on transport errors and 5xx; None when patience ran out."""
        deadline = time.monotonic() + self.patience_s
        delay = 0.2
        while True:
            try:
                reply = await self.http.request(method, url, **kwargs)
                if reply.status_code < 500:
                    return reply
                outcome.reason = f"{reply.status_code}: {reply.text[:150]}"
            except httpx.TransportError as err:
                outcome.reason = f"{type(err).__name__}: {err}"
            if time.monotonic() + delay > deadline:
                return None
            outcome.retries += 1
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)

    async def _closed(self, outcome: Outcome, order_id: str) -> bool:
        """A choreographed order has no workflow to wait on: its row says when it closed."""
        deadline = time.monotonic() + self.patience_s
        while time.monotonic() < deadline:
            seen = await self._request(outcome, "GET", f"/orders/{order_id}")
            if seen is not None and seen.status_code == 200 and seen.json()["status"] != "PENDING":
                return True
            await asyncio.sleep(0.2)
        return False

    async def _saga_ended(self, order_id: str) -> bool:
        handle = self.temporal.get_workflow_handle(workflow_id_for(order_id))
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                await handle.result()
                return True
            except WorkflowFailureError:
                return True  # compensated, which is an end
            except (RPCError, RuntimeError):
                # Temporal restarting: ask again.
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)


async def drive(
    kinds: Sequence[Kind],
    one: Callable[[Kind], Awaitable[Outcome]],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    on_done: Callable[[Outcome], None] = lambda _: None,
) -> list[Outcome]:
    """Closed loop (at most `concurrency` in flight) or open loop (`rate` starts per second)."""

    async def tracked(kind: Kind) -> Outcome:
        outcome = await one(kind)
        on_done(outcome)
        return outcome

    if rate is not None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        tasks = []
        for n, kind in enumerate(kinds):
            await asyncio.sleep(max(0.0, began + n / rate - loop.time()))
            tasks.append(asyncio.ensure_future(tracked(kind)))
        return list(await asyncio.gather(*tasks))
    gate = asyncio.Semaphore(concurrency or 1)

    async def gated(kind: Kind) -> Outcome:
        async with gate:
            return await tracked(kind)

    return list(await asyncio.gather(*(gated(k) for k in kinds)))


def outcome_counts(outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    """For each kind meant, how many ended in each status."""
    table: dict[str, Counter[str]] = {}
    for o in outcomes:
        table.setdefault(o.kind.value, Counter())[o.status] += 1
    return {kind: dict(sorted(c.items())) for kind, c in sorted(table.items())}
