"""Consistent hashing with virtual nodes: which relay instance owns which partition.

Each member places `vnodes` points on a 64-bit ring; a partition belongs to the
first member point clockwise from the partition's own point. When a member
joins it takes over only the partitions that now fall to its points, and when
one leaves only its partitions move, each to its clockwise neighbour — the
seed's consistent hashing, so a rebalance moves about 1/N of the partitions.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

VNODES = 64


def _point(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def assign(members: Iterable[str], partitions: int, vnodes: int = VNODES) -> dict[int, str]:
    """partition → owning member; empty when there are no members."""
    ring = sorted(
        (_point(f"{member}#{n}"), member) for member in set(members) for n in range(vnodes)
    )
    if not ring:
        return {}
    points = [point for point, _ in ring]
    owners: dict[int, str] = {}
    for partition in range(partitions):
        at = bisect.bisect(points, _point(f"partition-{partition}")) % len(ring)
        owners[partition] = ring[at][1]
    return owners


def owned_by(member: str, members: Iterable[str], partitions: int) -> set[int]:
    return {p for p, owner in assign(members, partitions).items() if owner == member}
