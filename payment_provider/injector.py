"""ASGI middleware that applies the active faults to /v1 requests (never to /admin).

It must be the outermost layer: dropping a connection needs the server's own
`send`. ASGI has no way to close a connection without answering, so a drop
aborts the socket under the server: uvicorn's `send` is a bound method of its
request cycle, which holds the transport. Under a server without that, a drop
starts a response and abandons it, which servers answer by closing the
connection (the client sees a status line, then a broken body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from payment_provider.errors import error_body
from payment_provider.faults import Answer, Delay, Drop, FaultBook, Hang, LoseAnswer

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request",
    401: "authentication_error",
    402: "card_declined",
    409: "conflict",
    429: "rate_limited",
    500: "api_error",
    503: "service_unavailable",
}


def faultable(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class FaultInjector:
    def __init__(self, app: ASGIApp, faults: FaultBook) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not faultable(scope["path"]):
            await self.app(scope, receive, send)
            return
        for action in self.faults.plan(scope["path"]):
            logger.info("fault %s on %s %s", action, scope["method"], scope["path"])
            match action:
                case Delay(seconds):
                    await asyncio.sleep(seconds)
                case Answer():
                    await _answer(action, scope, receive, send)
                    return
                case Hang(seconds):
                    await _hold(seconds, receive)
                    await _drop(receive, send)
                    return
                case Drop():
                    await _drop(receive, send)
                    return
                case LoseAnswer(seconds):
                    await self.app(scope, receive, _discard)
                    await _hold(seconds, receive)
                    await _drop(receive, send)
                    return
        await self.app(scope, receive, send)


async def _discard(message: object) -> None:
    """The answer of a request that applied, going nowhere."""


async def _answer(answer: Answer, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"X-Injected-Fault": "status"}
    if answer.retry_after is not None:
        headers["Retry-After"] = str(answer.retry_after)
    body = error_body(_TYPES[answer.status], f"injected fault: HTTP {answer.status}")
    await JSONResponse(body, status_code=answer.status, headers=headers)(scope, receive, send)


async def _hold(seconds: float, receive: Receive) -> None:
    """Answer nothing for `seconds`, or until the client gives up; the request never applies."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await _until_disconnect(receive)


async def _drop(receive: Receive, send: Send) -> None:
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
        # Return once the server has seen the loss: it then neither sends a 500
        # nor logs an unfinished response.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                await _until_disconnect(receive)
        return
    await send({"type": "http.response.start", "status": 503, "headers": []})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
