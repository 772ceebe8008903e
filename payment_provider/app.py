"""The simulator's FastAPI application; `create_app()` builds it, nothing happens at import."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from payment_provider import admin, errors, routes
from payment_provider.injector import FaultInjector
from payment_provider.state import ProviderState

# For health checks: answers on the /v1 listener whatever faults are active.
health = APIRouter(include_in_schema=False)


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class _ProviderApp(FastAPI):
    def __init__(self, state: ProviderState) -> None:
        super().__init__(
            title="Payment provider simulator",
            summary="A Stripe-like card processor with test tokens and injectable faults.",
            version="0.1.0",
        )
        self.state.provider = state
        self._faults = state.faults

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's own middleware: dropping a connection needs the
        # server's `send`, not a wrapper of it (see injector).
        return FaultInjector(super().build_middleware_stack(), self._faults)


def create_app(state: ProviderState | None = None, *, with_admin: bool = True) -> FastAPI:
    """/v1 (and /healthz); /admin/faults too unless `with_admin` is False."""
    app = _ProviderApp(state or ProviderState())
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(health)
    if with_admin:
        app.include_router(admin.router)
    return app


def create_admin_app(state: ProviderState) -> FastAPI:
    """/admin/faults alone, over the same books: for a listener of its own."""
    app = FastAPI(title="Payment provider simulator: faults", version="0.1.0")
    app.state.provider = state
    errors.install(app)
    app.include_router(admin.router)
    return app
