"""The sagas' own counters, through the SDK's replay-safe workflow meter.

They reach the worker's Prometheus endpoint with the SDK's labels (namespace,
task_queue, workflow_type) plus ours; a replay does not count again.
"""

from __future__ import annotations

from temporalio import workflow


def count(name: str, description: str, **labels: str) -> None:
    meter = workflow.metric_meter()
    if labels:
        meter = meter.with_additional_attributes(labels)
    meter.create_counter(name, description).add(1)
