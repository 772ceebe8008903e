"""`/admin/faults`: install, list and clear injected faults. Never faulted itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from payment_provider.faults import parse_fault
from payment_provider.routes import Provider

router = APIRouter(prefix="/admin/faults", tags=["admin"])

_EXAMPLES = [
    {"status": 503, "count": 2},
    {"status": 429, "retry_after": 3, "count": 1},
    {"mode": "latency", "seconds": 0.5, "for_seconds": 10},
    {"mode": "hang", "seconds": 30},
    {"mode": "error_rate", "rate": 0.3, "status": 500, "for_seconds": 10, "seed": 7},
    {"mode": "down", "for_seconds": 5},
    {"mode": "lose_answer", "seconds": 10, "count": 1},
]


@router.post("", status_code=201)
async def add_fault(
    payload: Annotated[dict[str, object], Body(examples=_EXAMPLES)], provider: Provider
) -> JSONResponse:
    fault = provider.faults.add(parse_fault(payload))
    views = {view["id"]: view for view in provider.faults.views()}
    return JSONResponse(views.get(fault.id, {"id": fault.id}), status_code=201)


@router.get("")
async def list_faults(provider: Provider) -> dict[str, object]:
    return {"faults": provider.faults.views()}


@router.delete("")
async def clear_faults(provider: Provider) -> dict[str, object]:
    return {"cleared": provider.faults.clear()}
