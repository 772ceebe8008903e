"""Everything the simulator holds: the books, stored responses, active faults.

In memory; with a journal (payment_provider.journal) the books and the stored
responses also survive a restart of the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from payment_provider.errors import ProviderError
from payment_provider.faults import FaultBook
from payment_provider.journal import Journal
from payment_provider.ledger import Ledger

# An operation answers (status, body) or raises ProviderError; both are stored.
Operation = Callable[[], tuple[int, dict[str, object]]]


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, object]
    replayed: bool = False


@dataclass(frozen=True)
class _Stored:
    key: str
    fingerprint: str
    status: int
    body: dict[str, object]


class ProviderState:
    def __init__(self, faults: FaultBook | None = None, journal: Path | None = None) -> None:
        self.lock = asyncio.Lock()
        self.ledger = Ledger()
        self.faults = faults or FaultBook()
        self._journal = Journal(journal) if journal is not None else None
        self._responses: dict[str, _Stored] = {}
        if self._journal is not None:
            for answer in self._journal.load(self.ledger):
                stored = _Stored(**answer)
                self._responses[stored.key] = stored

    async def execute(self, key: str | None, fingerprint: str, operation: Operation) -> Outcome:
        """Run `operation` once per idempotency key; a repeat gets the stored answer.

        The lookup, the operation and the store happen under one lock, so of
        concurrent requests with one key exactly one applies and the others
        replay its answer. Refusals (a decline, a state conflict) are stored too,
        as a real provider does: a retry with the key gets the same refusal.
        `fingerprint` is method + path + body; another request under a used key
        is refused and not stored.
        """
        async with self.lock:
            stored = self._responses.get(key) if key is not None else None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise ProviderError(
                        409,
                        "idempotency_key_reused",
                        f"idempotency key {key!r} was used with other parameters",
                    )
                return Outcome(stored.status, stored.body, replayed=True)
            try:
                status, body = operation()
            except ProviderError as exc:
                status, body = exc.status, exc.body()
            stored = _Stored(key, fingerprint, status, body) if key is not None else None
            if stored is not None:
                self._responses[stored.key] = stored
            changes = self.ledger.take_changes()
            if self._journal is not None:
                # Before the answer is sent: what a client was told, a restart keeps.
                self._journal.append(changes, asdict(stored) if stored is not None else None)
            return Outcome(status, body)
