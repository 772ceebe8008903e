"""The simulator's books on disk: one JSON line per change, read back at start.

A real provider does not forget a payment because one of its processes
restarted, and `make run` restarts the simulator like any app: without this,
a capture retried after the restart would find no authorization, and a
retried authorization under a used key would authorize twice. Each request's
changes and its stored answer go out as one line, flushed before the answer
is sent: a killed process loses nothing (a lost machine may; it is a
simulator). Faults are not kept: they are a test's, not the provider's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from payment_provider.ledger import Change, Ledger


class Journal:
    def __init__(self, path: Path) -> None:
        self._path = path

    def load(self, ledger: Ledger) -> list[dict[str, Any]]:
        """Apply every recorded change to `ledger`; the stored answers, oldest first."""
        answers: list[dict[str, Any]] = []
        if not self._path.exists():
            return answers
        with self._path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.endswith("\n"):
                    break  # the process died writing it: its answer was never sent
                entry = json.loads(line)
                for kind, record in entry["changes"]:
                    ledger.apply(kind, record)
                if entry["answer"] is not None:
                    answers.append(entry["answer"])
        return answers

    def append(self, changes: list[Change], answer: dict[str, Any] | None) -> None:
        if not changes and answer is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"changes": changes, "answer": answer}) + "\n")
