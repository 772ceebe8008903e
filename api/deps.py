"""Dependencies as Annotated aliases; the app's lifespan puts the objects on app.state.

Each is `async def` though it awaits nothing: FastAPI runs a plain `def` dependency
on a thread of its pool, a thread hop (and its CPU) per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.catalog import PriceCache
from api.schemas import ID_PATTERN
from db.engine import SessionFactory
from security.sealed import Sealer
from settings_slices import ApiFlows


async def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


async def _catalog(request: Request) -> PriceCache:
    catalog: PriceCache = request.app.state.catalog
    return catalog


async def _flows(request: Request) -> ApiFlows:
    flows: ApiFlows = request.app.state.flows
    return flows


async def _sealer(request: Request) -> Sealer:
    sealer: Sealer = request.app.state.sealer
    return sealer


TemporalDep = Annotated[Client, Depends(_client)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SessionsDep = Annotated[SessionFactory, Depends(_sessions)]
FlowsDep = Annotated[ApiFlows, Depends(_flows)]
SealerDep = Annotated[Sealer, Depends(_sealer)]
CatalogDep = Annotated[PriceCache, Depends(_catalog)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=ID_PATTERN,
        description="Repeat a POST safely: the same key and body return the same answer.",
    ),
]


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def declared_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not declare, or one given twice.

    FastAPI ignores the one and takes the last of the other: `?statuss=PENDING`
    would list every order, `POST /orders?mode=choreography` place an
    orchestrated one. A strict API says so instead, as it does for an unknown
    body field. (OpenAPI cannot state it; docs/api.md does.)
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    declared = _query_names(route.dependant)
    takes = ", ".join(sorted(declared)) or "no query parameters"
    errors = []
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if name not in declared:
            message = f"Unknown query parameter; this endpoint takes {takes}"
            errors.append(_query_error("extra_forbidden", name, message, values))
        elif len(values) > 1:
            message = "Given more than once; give it once"
            errors.append(_query_error("query_repeated", name, message, values))
    if errors:
        raise RequestValidationError(errors)


def _query_error(kind: str, name: str, message: str, values: list[str]) -> dict[str, object]:
    return {"type": kind, "loc": ("query", name), "msg": message, "input": values}
