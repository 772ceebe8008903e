"""Every recorded history replays on today's workflow code.

A change that would break sagas already running (a step added, removed or
reordered without `workflow.patched`) fails here, naming the workflow and the
history file. No server: the Replayer re-runs the code against the history.
The replayer is the worker's own definition (temporal_client.replayer).
"""

from __future__ import annotations

import pytest
from temporalio import workflow

from history_corpus.cases import CASES
from history_corpus.files import CORPUS, Recorded, load_all
from temporal_client import replayer
from workflows.registry import WORKFLOWS

defn = workflow._Definition.must_from_class

RECORDED = load_all()


def test_the_corpus_holds_every_recorded_path():
    names = {f"{r.path.parent.name}/{r.path.stem}" for r in RECORDED}
    expected = {
        "order_saga/confirmed",
        "order_saga/out_of_stock",
        "order_saga/payment_declined",
        "order_saga/provider_retried",
        "order_saga/shipping_refused",
        "order_saga/cancelled_by_update",
        "order_saga/cancelled_by_request",
        "order_saga/two_phase_committed",
        "order_saga/two_phase_aborted",
        "two_phase_commit/committed",
        "two_phase_commit/aborted",
        # Recorded after the fraud check was added behind workflow.patched.
        "order_saga/confirmed@fraud-check",
        "order_saga/fraud_suspected@fraud-check",
        "order_saga/payment_unavailable@fraud-check",
        "order_saga/payment_declined@fraud-check",
        "order_saga/two_phase_committed@fraud-check",
        "two_phase_commit/committed@fraud-check",
        # Recorded after the coordinator's lock order, behind workflow.patched.
        "order_saga/two_phase_committed@lock-order",
        "order_saga/two_phase_aborted@lock-order",
        "two_phase_commit/committed@lock-order",
        "two_phase_commit/aborted@lock-order",
        # A cancel while the saga resolves a 2PC itself, before and after the shield.
        "order_saga/cancelled_while_resolving",
        "order_saga/cancelled_while_resolving@shielded-resolution",
        # The second saga written with the kit (workflows.return_saga).
        "return_saga/return_closed",
        "return_saga/return_refund_refused",
    }
    assert expected <= names, f"missing from {CORPUS}: {sorted(expected - names)}"
    recorded_cases = {name.split("/")[1].split("@")[0] for name in names}
    assert set(CASES) <= recorded_cases, f"cases never recorded: {set(CASES) - recorded_cases}"
    assert {r.workflow_type for r in RECORDED} == {defn(w).name for w in WORKFLOWS}


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda r: f"{r.path.parent.name}/{r.path.stem}")
async def test_history_replays(recorded: Recorded):
    result = await replayer().replay_workflow(recorded.history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        where = recorded.path.relative_to(CORPUS.parents[1])
        pytest.fail(
            f"{recorded.workflow_type} no longer replays {where}: {result.replay_failure}",
            pytrace=False,
        )
