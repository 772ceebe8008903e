"""The card's real participant, stopped or interleaved at the one point a test needs.

Only `_authorize` is wrapped: every database write and provider call before
and after it is the real code's, so what a test sees afterwards is what that
code leaves behind.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.card_hold import CardHoldParticipant
from activities.provider_client import PaymentProviderClient
from db.engine import create_session_factory
from domain.two_phase import BranchCall
from security.sealed import Sealer
from settings import Settings
from wiring.activities import provider_retry

P = TypeVar("P", bound=CardHoldParticipant)


class WorkerDied(Exception):
    """The try's worker stopped here: nothing after this point ran."""


class DiesAfterAuthorizing(CardHoldParticipant):
    """A try whose worker dies once the provider has authorized, before it records the hold.

    With `until`, it first hangs (a worker gone silent) until the event is set.
    """

    def __init__(self, *args: Any, until: asyncio.Event | None = None) -> None:
        super().__init__(*args)
        self.authorized = asyncio.Event()
        self._until = until

    async def _authorize(self, call: BranchCall) -> str:
        await super()._authorize(call)
        self.authorized.set()
        if self._until is not None:
            await self._until.wait()
        raise WorkerDied(f"the worker died after authorizing {call.gid}")


def participant(
    kind: type[P],
    engine: AsyncEngine,
    settings: Settings,
    provider: PaymentProviderClient,
    **options: Any,
) -> P:
    """A `kind` built as `activities.card_participant` builds the real one."""
    return kind(
        create_session_factory(engine),
        timedelta(seconds=settings.card_hold_ttl_s),
        provider,
        provider_retry(settings.provider()),
        Sealer.from_keys(settings.card_keys()),
        **options,
    )
