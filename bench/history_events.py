"""What a workflow leaves in Temporal's history: events, workflow tasks, activities.

A saga's figures include its children's (the 2PC coordinator of an order paid
partly by store credit), since the server stores and replays those as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

SAMPLE = 100  # histories read per series: enough for a mean, cheap after the run

_COUNTED = {
    "workflow_tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    "activities": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    # A local activity's result is a marker in the history.
    "markers": EventType.EVENT_TYPE_MARKER_RECORDED,
}


@dataclass
class HistoryCount:
    events: int = 0
    workflow_tasks: int = 0
    activities: int = 0
    markers: int = 0
    children: int = 0


async def count_history(client: Client, workflow_id: str) -> HistoryCount:
    """One workflow's history and its child workflows', added up."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    count = HistoryCount(events=len(history.events))
    children = []
    for event in history.events:
        for field, kind in _COUNTED.items():
            if event.event_type == kind:
                setattr(count, field, getattr(count, field) + 1)
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            attributes = event.child_workflow_execution_started_event_attributes
            children.append(attributes.workflow_execution.workflow_id)
    for child in await asyncio.gather(*(count_history(client, c) for c in children)):
        count.events += child.events
        count.workflow_tasks += child.workflow_tasks
        count.activities += child.activities
        count.markers += child.markers
        count.children += 1 + child.children
    return count


def evenly(items: Sequence[str], most: int) -> list[str]:
    """At most `most` of `items`, spread over the whole run rather than its start."""
    if len(items) <= most:
        return list(items)
    return [items[i * len(items) // most] for i in range(most)]


async def history_summary(
    client: Client, workflow_ids: Sequence[str], most: int = SAMPLE
) -> dict[str, Any]:
    """Means per workflow over a sample of `workflow_ids` (children included)."""
    sampled = evenly(workflow_ids, most)
    if not sampled:
        return {"sampled": 0}
    counts = [await count_history(client, wid) for wid in sampled]
    events = [c.events for c in counts]
    return {
        "sampled": len(counts),
        "events": round(sum(events) / len(counts), 1),
        "events_min": min(events),
        "events_max": max(events),
        **{f: round(sum(getattr(c, f) for c in counts) / len(counts), 2) for f in _COUNTED},
        "child_workflows": sum(c.children for c in counts),
    }
