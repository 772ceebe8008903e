"""Consistent hashing moves only the partitions that must move."""

from __future__ import annotations

from relay.ring import assign, owned_by

PARTITIONS = 64


def test_every_partition_has_exactly_one_owner():
    owners = assign(["a", "b", "c"], PARTITIONS)

    assert sorted(owners) == list(range(PARTITIONS))
    assert set(owners.values()) == {"a", "b", "c"}


def test_partitions_spread_roughly_evenly_across_members():
    owners = assign(["a", "b", "c"], PARTITIONS)
    counts = [list(owners.values()).count(m) for m in "abc"]

    assert min(counts) >= PARTITIONS // 6


def test_a_member_leaving_moves_only_its_own_partitions():
    before = assign(["a", "b", "c"], PARTITIONS)
    after = assign(["a", "b"], PARTITIONS)

    moved = {p for p in before if before[p] != after[p]}

    assert moved == {p for p, owner in before.items() if owner == "c"}


def test_a_member_joining_takes_partitions_only_for_itself():
    before = assign(["a", "b"], PARTITIONS)
    after = assign(["a", "b", "c"], PARTITIONS)

    moved = {p for p in before if before[p] != after[p]}

    assert moved and all(after[p] == "c" for p in moved)


def test_assignment_is_the_same_whoever_computes_it():
    assert assign(["b", "a", "c"], PARTITIONS) == assign(["c", "b", "a"], PARTITIONS)
    assert owned_by("a", ["a"], PARTITIONS) == set(range(PARTITIONS))
    assert assign([], PARTITIONS) == {}
