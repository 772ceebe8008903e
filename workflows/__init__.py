"""Workflows: deterministic saga code; no I/O, clocks, randomness or database imports."""

from __future__ import annotations

from collections.abc import Sequence

from workflows.order_saga import OrderSaga
from workflows.two_phase import TwoPhaseCommit

# One list for the worker, the replayer and the tests, so they cannot drift.
WORKFLOWS: Sequence[type] = (OrderSaga, TwoPhaseCommit)
