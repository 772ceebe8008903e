"""`sagactl audit`: does every order end fully done or fully undone?

Checks the services' rows against each other and the read model
(audit.checks) and, when given, the payment provider's books against ours
(audit.provider) and Temporal's open sagas for ones that stopped moving
(audit.temporal); returns every violation found.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.provider_client import PaymentProviderClient
from audit.checks import Scope, Violation, database_violations
from audit.provider import provider_violations
from audit.temporal import stuck_sagas


async def run_audit(
    engine: AsyncEngine,
    scope: Scope,
    provider: PaymentProviderClient | None = None,
    temporal: Client | None = None,
    *,
    read_model: bool = True,
) -> list[Violation]:
    """Each source left out (None, False) is not checked."""
    async with engine.connect() as conn:
        found = await database_violations(conn, scope, read_model)
        if provider is not None:
            found += await provider_violations(conn, provider, scope)
    if temporal is not None:
        found += await stuck_sagas(temporal, scope)
    return found


__all__ = ["Scope", "Violation", "run_audit"]
