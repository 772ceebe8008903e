"""The coordinator's prepare order: the unranked at once, the ranked rank after rank."""

from __future__ import annotations

from domain.two_phase import ParticipantSpec
from workflows.two_phase import lock_order


def spec(name: str, rank: int | None) -> ParticipantSpec:
    return ParticipantSpec(name=name, kind="xa", prepare="p", commit="c", abort="a", lock_rank=rank)


def test_ranked_participants_go_in_rank_order_and_the_unranked_at_once():
    participants = [spec("wallet", 1), spec("card", None), spec("stock", 0), spec("ledger", 2)]

    assert lock_order(participants) == ([1], [[2], [0], [3]])


def test_positions_not_names_so_a_repeated_name_cannot_hide_a_vote():
    assert lock_order([spec("x", 0), spec("x", 0)]) == ([], [[0, 1]])


def test_without_ranks_everyone_prepares_at_once():
    assert lock_order([spec("a", None), spec("b", None)]) == ([0, 1], [])
    assert lock_order([]) == ([], [])
