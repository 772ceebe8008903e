"""`sagactl audit`: does every order end fully done or fully undone?

Checks the services' rows against each other (audit.checks) and, when asked,
the payment provider's books against ours (audit.provider); returns every
violation found.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.provider_client import PaymentProviderClient
from audit.checks import Scope, Violation, database_violations
from audit.provider import provider_violations


async def run_audit(
    engine: AsyncEngine, scope: Scope, provider: PaymentProviderClient | None = None
) -> list[Violation]:
    async with engine.connect() as conn:
        found = await database_violations(conn, scope)
        if provider is not None:
            found += await provider_violations(conn, provider, scope)
    return found


__all__ = ["Scope", "Violation", "run_audit"]
