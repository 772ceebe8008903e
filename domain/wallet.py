"""The store-credit wallet as an event stream: its events, and its state as their fold.

Pure: no I/O. The store (db.wallet_store) loads events, folds them here,
asks here what a change means, and appends the answer at the next version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class WalletEventType(StrEnum):
    OPENED = "AccountOpened"
    CREDITED = "Credited"
    DEBITED = "Debited"
    DEBIT_REVERSED = "DebitReversed"


@dataclass(frozen=True)
class WalletEvent:
    type: WalletEventType
    amount: int  # minor units, never negative: the type says which way it moves
    entry_id: str  # derived from the step that wrote it: appending it twice is refused
    order_id: str | None = None
    version: int | None = None  # set once stored
    occurred_at: datetime | None = None

    @property
    def signed(self) -> int:
        return -self.amount if self.type is WalletEventType.DEBITED else self.amount


@dataclass(frozen=True)
class WalletState:
    customer_id: str
    version: int = 0  # of the last event folded in; 0: no stream yet
    balance: int = 0

    @property
    def opened(self) -> bool:
        return self.version > 0


class Overdraft(Exception):
    """A debit the balance does not cover."""


def apply(state: WalletState, event: WalletEvent) -> WalletState:
    version = event.version if event.version is not None else state.version + 1
    return replace(state, version=version, balance=state.balance + event.signed)


def fold(state: WalletState, events: Iterable[WalletEvent]) -> WalletState:
    for event in events:
        state = apply(state, event)
    return state


def opening_if_needed(state: WalletState, entry_id: str) -> list[WalletEvent]:
    return [] if state.opened else [WalletEvent(WalletEventType.OPENED, 0, f"open:{entry_id}")]


def credit(state: WalletState, amount: int, entry_id: str) -> list[WalletEvent]:
    return [
        *opening_if_needed(state, entry_id),
        WalletEvent(WalletEventType.CREDITED, amount, entry_id),
    ]


def debit(state: WalletState, amount: int, entry_id: str, order_id: str) -> list[WalletEvent]:
    if state.balance < amount:
        raise Overdraft(f"insufficient store credit for {amount} (balance {state.balance})")
    return [WalletEvent(WalletEventType.DEBITED, amount, entry_id, order_id)]


def reverse_debit(amount: int, entry_id: str, order_id: str) -> list[WalletEvent]:
    return [WalletEvent(WalletEventType.DEBIT_REVERSED, amount, entry_id, order_id)]
