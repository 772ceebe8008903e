"""Loopback port helpers for tests and the supervisor's preflight check."""

from __future__ import annotations

import random
import socket

LOOPBACK = "127.0.0.1"

# Below Linux's ephemeral range (32768-60999): servers that bind port 0 for
# themselves (the Temporal dev server opens several) and outgoing connections
# draw from that range, and would race a port we picked there and bind later.
_PICK_FROM = range(20000, 32000)


# Ports handed out by this process: callers pick several before any binds
# (a whole stack's ports at once), and two of them must never be the same.
_HANDED_OUT: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A free port outside the ephemeral range, never one this process handed out
    before; still free only until someone binds it."""
    if len(_HANDED_OUT) > len(_PICK_FROM) // 2:
        _HANDED_OUT.clear()  # long gone by now; keep picks from running dry
    for _ in range(200):
        port = random.choice(_PICK_FROM)
        if port not in _HANDED_OUT and not port_in_use(port, host):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        fallback: int = sock.getsockname()[1]
        return fallback


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something listens on host:port (or on the wildcard address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so TIME_WAIT leftovers of a previous run
        # must not count as "in use"; a live listener still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False
