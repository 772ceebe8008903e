"""The relay's settings as its passes take them."""

from __future__ import annotations

from dataclasses import dataclass

from settings_slices import RelaySettings


@dataclass(frozen=True)
class RelayConfig:
    batch_size: int = 500
    publish_timeout_s: float = 5.0
    max_attempts: int = 10
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    # How long a pass's claim keeps its rows from other passes: past any pass
    # that publishes (a few publish timeouts) and past the claimer's lease.
    claim_ttl_s: float = 15.0


def config_from(relay_settings: RelaySettings) -> RelayConfig:
    return RelayConfig(
        batch_size=relay_settings.batch_size,
        publish_timeout_s=relay_settings.publish_timeout_s,
        max_attempts=relay_settings.max_attempts,
    )
