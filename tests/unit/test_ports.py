"""Free ports picked in a row are distinct; a port already in use stops the stack."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from settings import Settings
from stack.errors import StackError
from stack.ports import LOOPBACK, free_port
from stack.preflight import check_ports
from stack.sandbox import _PORTS as PORTS


def test_ports_picked_in_a_row_never_repeat():
    # A stack's ports are all picked before any server binds one: a repeat would
    # give two servers one port (it once gave the API the worker's metrics port).
    picked = [free_port() for _ in range(2000)]

    assert len(set(picked)) == len(picked)


def test_a_metrics_port_in_use_stops_the_stack_naming_its_setting():
    # Each process only logs a page it cannot bind, while the banner would
    # advertise it: the stack refuses to start instead.
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        values: dict[str, Any] = {name: free_port() for name in PORTS}
        values.update(
            choreography_metrics_port=busy,
            database_url="postgresql://x@127.0.0.1/x",
            temporal_address="127.0.0.1:1",
            nats_url="nats://127.0.0.1:1",
            payment_provider_url="http://127.0.0.1:1",
        )
        settings = Settings(**values)

        with pytest.raises(StackError, match=f"port {busy} is in use: set SAGA_CHOREOGRAPHY"):
            check_ports(settings)

    check_ports(settings.model_copy(update={"choreography_metrics_port": 0}))
