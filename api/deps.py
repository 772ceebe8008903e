"""Dependencies as Annotated aliases; the app's lifespan puts the objects on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from db.engine import SessionFactory
from settings import Settings


def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def _sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


TemporalDep = Annotated[Client, Depends(_client)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SessionsDep = Annotated[SessionFactory, Depends(_sessions)]
SettingsDep = Annotated[Settings, Depends(_settings)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a POST safely: the same key and body return the same answer.",
    ),
]
