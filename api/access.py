"""Who may call the API, and how much they may send.

Credentials: `X-API-Key: <key>` or `Authorization: Bearer <key>`. Each key
has a role (api.roles), which this middleware finds and leaves in the scope;
each route checks it. Outside dev mode (`SAGA_ENVIRONMENT=production`) the API
refuses to start without keys; in dev mode they are enforced once any is
set, and with none every caller is an admin. Health and metrics stay open
for probes and scrapers. Refusals are problem details: 401 (no or unknown
credentials, with `WWW-Authenticate`), 403 (a role short of the route's,
from the route), 413 (a body over `SAGA_API_MAX_BODY_BYTES`, refused before
it is read in full).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import MEDIA_TYPE
from api.roles import SCOPE_KEY, Role, keys_by_role
from settings_slices import ApiAccess

# status, title, detail, problem code, extra headers
Refusal = tuple[int, str, str, str, dict[str, str]]
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")


class AccessControl:
    """Pure ASGI, outermost: nothing runs for a request it refuses."""

    def __init__(self, app: ASGIApp, access: ApiAccess) -> None:
        self.app = app
        # Highest role first: a key listed twice counts as its highest.
        self._keys = sorted(keys_by_role(access).items(), reverse=True)
        self._max_body = access.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _problem(scope, send, refusal)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            await _problem(scope, send, self._too_large())
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            # Past the limit: answer 413 now, and tell the app the client left.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max_body:
                    refused = True
                    await _problem(scope, send, self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not refused:
                raise

    def _refusal(self, scope: Scope) -> Refusal | None:
        if not any(keys for _, keys in self._keys):
            scope[SCOPE_KEY] = Role.ADMIN  # dev mode without keys: open by design
            return None
        if _open(scope["path"]):
            return None
        presented = _credentials(scope)
        challenge = {"WWW-Authenticate": 'Bearer realm="saga"'}
        if presented is None:
            detail = "send an API key in X-API-Key or Authorization: Bearer"
            return 401, "Credentials required", detail, "unauthenticated", challenge
        matched = [role for role, keys in self._keys if _known(presented, keys)]  # all compared
        if matched:
            scope[SCOPE_KEY] = matched[0]
            return None
        return 401, "Unknown credentials", "the API key is not valid", "unauthenticated", challenge

    def _too_large(self) -> Refusal:
        detail = f"the request body is over {self._max_body} bytes"
        return 413, "Request too large", detail, "too-large", {}


def _open(path: str) -> bool:
    # The path itself or below it: `/docsx` is not `/docs`.
    return any(path == p or path.startswith(f"{p}/") for p in OPEN_PATHS)


def _known(presented: bytes, keys: Iterable[bytes]) -> bool:
    # Every key compared, in constant time: no early exit tells which one was close.
    return any([hmac.compare_digest(presented, key) for key in keys])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _credentials(scope: Scope) -> bytes | None:
    key = _header(scope, b"x-api-key")
    if key:
        return key.encode()
    authorization = _header(scope, b"authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip().encode()
    return None


async def _problem(scope: Scope, send: Send, refusal: Refusal) -> None:
    status, title, detail, code, headers = refusal
    body = json.dumps(
        {
            "type": f"/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope["path"],
        }
    ).encode()
    raw = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
