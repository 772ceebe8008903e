"""Reading the replay corpus in tests: one recorded history, its activities and patch markers."""

from __future__ import annotations

from history_corpus.files import Recorded, load_all
from history_corpus.steps import patches_of, steps_of

__all__ = ["Recorded", "activities_of", "patch_markers", "recorded"]


def recorded(name: str) -> Recorded:
    (found,) = [r for r in load_all() if f"{r.path.parent.name}/{r.path.stem}" == name]
    return found


def activities_of(one: Recorded) -> list[str]:
    """Its activities, regular or local, in the order the history records them."""
    return steps_of(one.history)


def patch_markers(one: Recorded) -> list[str]:
    return patches_of(one.history)
