"""The relay process's entry: `SAGA_RELAY_MODE` picks how the outbox is read.

`hybrid` (the default): woken by NOTIFY at commit, with a poll behind it;
`poll`: the poll alone (both relay.polling_loop); `cdc`: the outbox read from
the WAL by logical decoding (relay.cdc_loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from db.kit_tables import RelayTables
from relay.cdc_loop import run_cdc
from relay.polling_loop import run_polling
from relay.stats import RelayStats
from settings_slices import RelaySettings


async def run_relay(
    relay_settings: RelaySettings,
    stop: asyncio.Event,
    *,
    tables: RelayTables,
    partitions: Sequence[int] | None = None,
    stats: RelayStats | None = None,
    instance_id: str | None = None,
) -> None:
    """Publish the outboxes of `tables` (what the application serves) until `stop`.

    With `partitions` given (polling modes), work on exactly those and take no
    leases (one instance alone); by default share all partitions with the other
    instances by leases."""
    stats = stats if stats is not None else RelayStats()
    if relay_settings.mode == "cdc":
        await run_cdc(relay_settings, stop, stats, tables)
    else:
        await run_polling(relay_settings, stop, stats, partitions, instance_id, tables)
