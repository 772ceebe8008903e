"""The control socket `sagactl worker` reaches `make run` on."""

from __future__ import annotations

import os
import stat

import pytest

from stack.control import ask, listening

pytestmark = pytest.mark.asyncio


async def test_only_this_user_may_connect_whatever_the_umask(tmp_path):
    path = tmp_path / "supervisor.sock"

    async def handle(action: str, app: str) -> str:
        return f"{action} {app}"

    old = os.umask(0o000)
    try:
        async with listening(path, handle):
            mode = stat.S_IMODE(path.stat().st_mode)
            answer = await ask(path, "stop", "worker")
    finally:
        os.umask(old)

    assert mode == 0o600
    assert answer == "stop worker"
