"""Errors as the provider answers them: always `{"error": {"type", "message"}}`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_HTTP_TYPES = {404: "resource_missing", 405: "method_not_allowed"}
_LOCATIONS = {"body", "query", "path", "header"}


class ProviderError(Exception):
    """A refusal the provider answers with `status`; `type` is what clients branch on."""

    def __init__(self, status: int, type_: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.param = param

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"type": self.type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def error_body(type_: str, message: str) -> dict[str, object]:
    return {"error": {"type": type_, "message": message}}


def invalid_request(problems: Sequence[tuple[Sequence[int | str], str]]) -> ProviderError:
    """422 naming every offending field (`param` is the first), from (loc, msg) pairs."""
    fields = [_field(loc) for loc, _ in problems] or [""]
    message = "; ".join(
        f"{field}: {msg}" if field else msg
        for field, (_, msg) in zip(fields, problems, strict=False)
    )
    return ProviderError(
        422, "invalid_request", message or "invalid request", param=fields[0] or None
    )


def _field(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(str(part) for part in parts)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProviderError, _provider_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _provider_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProviderError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = invalid_request([(e["loc"], e["msg"]) for e in exc.errors()])
    return JSONResponse(error.body(), status_code=error.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    type_ = _HTTP_TYPES.get(exc.status_code, "invalid_request")
    return JSONResponse(
        error_body(type_, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("api_error", "internal error"), status_code=500)
