"""A saga's steps as its history records them: regular activities and local activity markers.

For tests, the benchmark and anyone reading a history: a local step is no
activity event, only a marker its workflow task recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Protocol

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent


class History(Protocol):
    """A fetched WorkflowHistory or the protobuf History of a recorded one."""

    @property
    def events(self) -> Iterable[HistoryEvent]: ...


LOCAL_ACTIVITY_MARKER = "core_local_activity"
PATCH_MARKER = "core_patch"


def step_attempts(history: History) -> list[tuple[str, int]]:
    """(activity, attempt) of every attempt the history shows, in order.

    A regular activity's attempts show as its started events (the last one
    only: the server records retries in place); a local activity's as the
    attempt its marker holds (the one that finished).
    """
    scheduled: dict[int, str] = {}
    found: list[tuple[str, int]] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = e.activity_task_started_event_attributes
            found.append((scheduled[started.scheduled_event_id], started.attempt))
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = e.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                data = json.loads(marker.details["data"].payloads[0].data)
                found.append((data["activity_type"], data["attempt"]))
    return found


def steps_of(history: History) -> list[str]:
    """Every activity the saga ran or scheduled, regular or local, in history order."""
    names = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = e.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                names.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    return names


def patches_of(history: History) -> list[str]:
    return [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == PATCH_MARKER
    ]
