"""The coordinator's prepare groups: by lock rank, the unranked with the first."""

from __future__ import annotations

from domain.two_phase import ParticipantSpec
from workflows.two_phase import lock_order


def spec(name: str, rank: int | None) -> ParticipantSpec:
    return ParticipantSpec(name=name, kind="xa", prepare="p", commit="c", abort="a", lock_rank=rank)


def names(groups: list[list[ParticipantSpec]]) -> list[list[str]]:
    return [[p.name for p in group] for group in groups]


def test_ranked_participants_go_in_rank_order_and_the_unranked_with_the_first():
    participants = [spec("wallet", 1), spec("card", None), spec("stock", 0), spec("bonus", 1)]

    assert names(lock_order(participants)) == [["stock", "card"], ["wallet", "bonus"]]


def test_without_ranks_everyone_prepares_at_once():
    assert names(lock_order([spec("a", None), spec("b", None)])) == [["a", "b"]]
    assert names(lock_order([])) == [[]]
