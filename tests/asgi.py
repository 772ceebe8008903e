"""The API app served in-process, its lifespan run, for tests that build it with own settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from api.app import create_app
from settings import Settings


async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
