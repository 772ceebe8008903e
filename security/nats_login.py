"""How a process logs in to NATS, and how its connection is named in logs.

In the compose stack each NATS client process is its own user
(deploy/nats/nats-server.conf): the relay alone may publish events, and a
consumer process may only bind, read and acknowledge its own durables. A
user's replies (JetStream API answers, pulled messages, publish acks) come on
its own inbox prefix, `_INBOX.<user>`, to which the server confines its
subscriptions: one user cannot read what is delivered to another.
"""

from __future__ import annotations

from typing import Any

from settings_slices import NatsConfig

INBOX_ROOT = "_INBOX"


def inbox_prefix(user: str) -> str:
    """The subjects `user`'s replies arrive on: `_INBOX.<user>.>` in the server's permissions."""
    return f"{INBOX_ROOT}.{user}"


def login_options(nats: NatsConfig) -> dict[str, Any]:
    """`nats.connect` keyword arguments for this process's user; none without one."""
    if nats.user is None or nats.password is None:
        return {}
    return {
        "user": nats.user,
        "password": nats.password.get_secret_value(),
        "inbox_prefix": inbox_prefix(nats.user),
    }


def connection_name(client: Any, nats: NatsConfig) -> str:
    """`host:port as <user>`: where the client is connected and who it is, never a password.

    From the live connection, not the configured URL, which may carry credentials.
    """
    url = client.connected_url
    where = f"{url.hostname}:{url.port}" if url is not None else "(not connected)"
    return f"{where} as {nats.user or 'no user'}"
