"""The floor: a workflow that runs N no-op activities one after another, nothing else.

What Temporal alone costs for a saga of N steps on the same server; the load
benchmark sets the saga's figures beside it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

NOOP = "bench_noop"


@activity.defn(name=NOOP)
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchBareSteps")
class BareSteps:
    @workflow.run
    async def run(self, steps: int) -> int:
        for step in range(steps):
            await workflow.execute_activity(
                NOOP, step, start_to_close_timeout=timedelta(seconds=10)
            )
        return steps
