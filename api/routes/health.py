"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import EngineDep, TemporalDep

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Temporal and PostgreSQL answer")
async def readyz(client: TemporalDep, engine: EngineDep) -> JSONResponse:
    async def postgres() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def temporal() -> None:
        await client.workflow_service.get_system_info(GetSystemInfoRequest())

    checks = {"postgres": postgres, "temporal": temporal}
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), CHECK_TIMEOUT_S) for check in checks.values()),
        return_exceptions=True,
    )
    status = {
        name: "ok"
        if not isinstance(result, BaseException)
        else f"unavailable: {type(result).__name__}"
        for name, result in zip(checks, results, strict=True)
    }
    ready = all(value == "ok" for value in status.values())
    if ready:
        return JSONResponse({"status": "ready", "checks": status})
    return JSONResponse(
        {
            "type": "/problems/not-ready",
            "title": "Not ready",
            "status": 503,
            "detail": "a dependency is unavailable",
            "checks": status,
        },
        status_code=503,
        media_type="application/problem+json",
    )
