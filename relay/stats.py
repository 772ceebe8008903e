"""What a relay pass did, and what a relay did since it started."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PassResult:
    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead_lettered: int = 0
    # Acks saying JetStream already had the event: someone published it before.
    duplicates: int = 0
    # The broker (not an event) failed: nothing was counted against the events.
    broker_error: str | None = None
    lag_ms: list[float] = field(default_factory=list)


@dataclass
class RelayStats:
    published: int = 0
    failed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    passes: int = 0
    lag_ms: list[float] = field(default_factory=list)

    def add(self, result: PassResult) -> None:
        self.published += result.published
        self.failed += result.failed
        self.dead_lettered += result.dead_lettered
        self.duplicates += result.duplicates
        self.passes += 1
        self.lag_ms.extend(result.lag_ms)

    def counters(self) -> dict[str, int]:
        """The running totals under their metric names."""
        return {
            "events_published": self.published,
            "publish_failures": self.failed,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
        }
