"""The FastAPI application; `create_app(settings)` builds it, nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import problems, telemetry
from api.access import AccessControl
from api.catalog import PriceCache
from api.deps import declared_query_only
from api.routes import codec, health, orders, products, returns, wallets
from db.engine import create_engine, create_session_factory
from db.relay_ring import close_engine
from security.sealed import Sealer
from settings import Settings
from startup import ConfigError, open_api_exposed, production_gaps
from temporal_client import connect, payload_codec, register_search_attributes


def create_app(settings: Settings) -> FastAPI:
    # An app embedded elsewhere than `python -m api` is held to the same rule.
    missing = production_gaps(settings, "api") or open_api_exposed(settings)
    if missing:
        raise ConfigError(missing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.flows = settings.api_flows()
        app.state.codec = payload_codec(settings.temporal())
        app.state.sealer = Sealer.from_keys(settings.card_keys())
        app.state.client = await connect(settings.temporal(), wait_seconds=60)
        # An API deployed before the workers must not start sagas with an
        # attribute the cluster does not know (every start would be refused).
        await register_search_attributes(app.state.client, settings.temporal_namespace)
        app.state.engine = create_engine(settings.database_target, settings.db_pool_size)
        app.state.sessions = create_session_factory(app.state.engine)
        app.state.catalog = PriceCache(app.state.engine, settings.api_price_cache_s)
        try:
            yield
        finally:
            await close_engine(app.state.engine)

    app = FastAPI(
        title="Saga orchestrator",
        summary=(
            "Orders carried through inventory, payments and shipping by Temporal sagas;"
            " store credit settles by two-phase commit."
        ),
        version="0.1.0",
        lifespan=lifespan,
        # Every route: a query parameter it does not declare is a 422, not ignored.
        dependencies=[Depends(declared_query_only)],
    )
    problems.install(app)
    # Added innermost first: metrics and the access log (outermost) see every
    # request, refusals included; CORS answers the Web UI's preflights before
    # access control, which refuses before any route runs.
    app.add_middleware(AccessControl, access=settings.api_access())
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.codec_cors_origins,
        allow_methods=["POST"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Namespace"],
    )
    telemetry.install(app)
    app.include_router(orders.router)
    app.include_router(returns.router)
    app.include_router(products.router)
    app.include_router(wallets.router)
    app.include_router(health.router)
    app.include_router(codec.router)
    return app
