"""Every workflow of the order system: one list for the worker, the replayer and the tests,
so they cannot drift.

Not in `workflows/__init__.py`: the sandbox re-imports a workflow's package with
each new workflow run, and every saga would pay for executing the coordinator's
module as well as its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from workflows.order_saga import OrderSaga
from workflows.return_saga import ReturnSaga
from workflows.two_phase import TwoPhaseCommit

WORKFLOWS: Sequence[type] = (OrderSaga, TwoPhaseCommit, ReturnSaga)
