"""Reading the replay corpus in tests: one recorded history, its activities and patch markers."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from history_corpus.files import Recorded, load_all

__all__ = ["Recorded", "activities_of", "patch_markers", "recorded"]


def recorded(name: str) -> Recorded:
    (found,) = [r for r in load_all() if f"{r.path.parent.name}/{r.path.stem}" == name]
    return found


def activities_of(one: Recorded) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in one.history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def patch_markers(one: Recorded) -> list[str]:
    return [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data.decode()
        for e in one.history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
