"""Where `python -m payment_provider` listens: /v1 on one socket, fault injection on its own.

The admin API makes every payment fail, hang or lose its answer, so no one
who can reach /v1 may reach it. With `SAGA_PAYMENT_PROVIDER_ADMIN_PORT` set
(the compose stack) /admin/faults is served only on that port, bound to
`SAGA_PAYMENT_PROVIDER_ADMIN_HOST` (loopback unless set: in a container,
reachable from inside it only), and the /v1 listener answers it 404. Unset,
both are served on one listener, which must then be loopback (`make run`,
the tests' embedded simulator).

One uvicorn server holds both sockets and routes each request by the port it
came in on, so one signal stops both and they share one set of books.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from payment_provider.app import create_admin_app, create_app
from payment_provider.state import ProviderState


@dataclass(frozen=True)
class Listeners:
    host: str
    port: int
    admin_host: str
    admin_port: int | None  # None: the admin API on the main listener

    @classmethod
    def checked(cls, host: str, port: int, admin_host: str, admin_port: int | None) -> Listeners:
        """The listeners to open; a ValueError names the setting that makes them unsafe."""
        listeners = cls(host, port, admin_host, admin_port)
        if listeners.admin_port is None and not is_loopback(listeners.host):
            raise ValueError(
                f"/admin/faults would listen on {listeners.host} beside /v1: set "
                "SAGA_PAYMENT_PROVIDER_ADMIN_PORT to serve it on a loopback listener of its own"
            )
        if listeners.admin_port == listeners.port:
            raise ValueError(
                "SAGA_PAYMENT_PROVIDER_ADMIN_PORT must differ from SAGA_PAYMENT_PROVIDER_PORT"
            )
        return listeners


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it may resolve anywhere
        return False


class ByPort:
    """Route each request to the app of the local port it arrived on."""

    def __init__(self, main: ASGIApp, by_port: dict[int, ASGIApp]) -> None:
        self.main = main
        self.by_port = by_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.main(scope, receive, send)  # the admin app has no lifespan of its own
            return
        server = scope.get("server")  # (host, port) of the socket the request came in on
        app = self.by_port.get(server[1], self.main) if server else self.main
        await app(scope, receive, send)


def build(listeners: Listeners, state: ProviderState) -> tuple[ASGIApp, list[socket.socket]]:
    """The app and its bound sockets."""
    main = _bind(listeners.host, listeners.port)
    if listeners.admin_port is None:
        return create_app(state), [main]
    admin = _bind(listeners.admin_host, listeners.admin_port)
    admin_app = create_admin_app(state)
    app = ByPort(create_app(state, with_admin=False), {listeners.admin_port: admin_app})
    return app, [main, admin]


def serve(listeners: Listeners, state: ProviderState, log_level: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    app, sockets = build(listeners, state)
    uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    # uvicorn's own binding: IPv6 hosts, SO_REUSEADDR, as `uvicorn.run` would.
    return uvicorn.Config(app="", host=host, port=port).bind_socket()  # app unused: bind only
