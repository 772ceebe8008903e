"""Free ports picked before anything binds them are still distinct."""

from __future__ import annotations

from stack.ports import free_port


def test_ports_picked_in_a_row_never_repeat():
    # A stack's ports are all picked before any server binds one: a repeat would
    # give two servers one port (it once gave the API the worker's metrics port).
    picked = [free_port() for _ in range(2000)]

    assert len(set(picked)) == len(picked)
