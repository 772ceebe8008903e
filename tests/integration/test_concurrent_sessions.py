"""A second pytest on the machine must not take the session's PostgreSQL down."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.asyncio


async def test_another_pytest_starting_leaves_this_sessions_postgres_running(engine, tmp_path):
    # A pytest without this project's conftest, using tmp_path: it makes the
    # shared /tmp/pytest-of-<user> private, as any other project's tests would.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "test_foreign.py").write_text("def test_it(tmp_path):\n    assert tmp_path\n")
    ran = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider", "."],
        cwd=foreign,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    async with engine.connect() as conn:
        # A checkpoint opens the data dir by its full path: what failed before.
        await conn.execute(text("CHECKPOINT"))
        assert await conn.scalar(text("SELECT 1")) == 1


def test_the_session_keeps_its_tmp_dirs_outside_the_shared_root(tmp_path: Path) -> None:
    assert not any(part.startswith("pytest-of-") for part in tmp_path.parts)
