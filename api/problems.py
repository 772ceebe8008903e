"""Errors as RFC 9457 problem details, one place for all of them.

Every 4xx names what was wrong (the field, for validation errors); a 5xx says
that something failed without showing a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import PATTERN_MESSAGES

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
# SQLSTATE class 22, "data exception": the value itself was unacceptable
# (a NUL in text, a string too long, a number out of range).
_DATA_EXCEPTION = "22"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        code: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code = status, title, detail, code
        self.headers, self.extra = headers, extra


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    code: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field(loc: tuple[int | str, ...]) -> str:
    """`('body', 'items', 2, 'sku')` → `items[2].sku`; headers and query keep their source."""
    source, *path = loc if loc else ("body",)
    if source == "body" and path and isinstance(path[0], int):
        # A JSON decode error: ('body', 38) is the offset of the bad character.
        return "body"
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    if source in ("header", "query", "path"):
        return f"{source}.{name}" if name else str(source)
    return name or "body"


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    if error["type"] != "string_pattern_mismatch":
        return message
    return PATTERN_MESSAGES.get(str(error.get("ctx", {}).get("pattern")), message)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field(tuple(e["loc"])), "message": _message(e)} for e in exc.errors()]
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem_response(
        request, 422, "Invalid request", f"invalid: {fields}", "validation", errors=errors
    )


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        request, exc.status, exc.title, exc.detail, exc.code, exc.headers, **exc.extra
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # Keep the exception's headers: a 405 must say which methods are Allowed.
    return problem_response(
        request,
        exc.status_code,
        str(exc.detail),
        str(exc.detail),
        f"http-{exc.status_code}",
        exc.headers,
    )


def _is_bad_data(exc: DBAPIError) -> bool:
    """PostgreSQL refused a value, not the statement.

    asyncpg reports a parameter it cannot encode with the same SQLSTATE class.
    """
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_DATA_EXCEPTION)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _is_bad_data(exc):
        # Input validation should have refused it first; say so in the log.
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            request, 422, "Invalid request", "a value in the request is not acceptable", "invalid"
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request, 500, "Internal error", "the request failed; it has been logged", "internal"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(Exception, _unexpected)
