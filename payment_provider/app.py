"""The simulator's FastAPI application; `create_app()` builds it, nothing happens at import."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from payment_provider import admin, errors, routes
from payment_provider.injector import FaultInjector
from payment_provider.state import ProviderState


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


def create_app(state: ProviderState | None = None) -> FastAPI:
    app = _ProviderApp(state or ProviderState())
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(admin.router)
    return app
