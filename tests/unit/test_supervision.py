"""Supervision of real child processes (tiny Python ones, no servers): restart, crash loop, hold."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from pathlib import Path

import pytest

from resilience.backoff import Backoff
from stack.process import ManagedProcess
from stack.restarts import RestartPolicy
from stack.supervision import Child, Supervision
from tests.factories import eventually

pytestmark = pytest.mark.asyncio
FAST = RestartPolicy(Backoff(0.05, 0.1), reset_after_s=30.0, loop_exits=3, loop_window_s=60.0)
SLEEPS = "import time; time.sleep(600)"


def child(tmp_path: Path, name: str, code: str, restart: bool = True) -> Child:
    process = ManagedProcess(name, [sys.executable, "-c", code], log_dir=tmp_path)
    process.start()
    return Child(process, functools.partial(process.stop, 5.0), restart=restart)


@pytest.fixture
def children():
    started: list[Child] = []
    yield started
    for each in started:
        each.process.kill()


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    async def messages() -> list[str]:
        return [record.getMessage() for record in caplog.records]

    await eventually(messages, lambda said: any(text in line for line in said), deadline_s=20)


async def test_a_killed_app_is_started_again_and_the_restart_is_logged(tmp_path, children, caplog):
    caplog.set_level(logging.INFO, "stack.supervision")
    children.append(worker := child(tmp_path, "worker", SLEEPS))
    watching = asyncio.ensure_future(Supervision(children, FAST).run())
    first = worker.process.pid
    try:
        worker.process.kill()
        await eventually(
            lambda: asyncio.sleep(0, worker.process),
            lambda p: p.alive and p.pid != first,
        )
    finally:
        watching.cancel()
    assert any(
        "worker exited on its own (signal SIGKILL); restarting it in" in record.getMessage()
        and "(restart 1)" in record.getMessage()
        for record in caplog.records
    )
    assert f"worker restarted as pid {worker.process.pid} (restart 1)" in caplog.text


async def test_an_app_that_keeps_exiting_ends_supervision_naming_it_and_its_exit_code(
    tmp_path, children
):
    children.append(child(tmp_path, "relay", SLEEPS))
    children.append(child(tmp_path, "consumers", "raise SystemExit(3)"))

    why = await asyncio.wait_for(Supervision(children, FAST).run(), 30)

    assert why.startswith("consumers is crash-looping (3 exits within ")
    assert why.endswith("the last with exit code 3): stopping everything")
    assert children[0].process.alive  # the caller stops the rest, in order


async def test_a_server_that_dies_is_not_restarted_and_ends_supervision(tmp_path, children):
    children.append(nats := child(tmp_path, "nats", SLEEPS, restart=False))
    watching = asyncio.ensure_future(Supervision(children, FAST).run())
    first = nats.process.pid

    nats.process.kill()
    why = await asyncio.wait_for(watching, 10)

    assert (
        why
        == "nats exited on its own (signal SIGKILL); servers are not restarted, so everything stops"
    )
    assert not nats.process.alive and nats.process.pid == first


async def test_a_held_app_stays_down_uncounted_until_released(tmp_path, children, caplog):
    caplog.set_level(logging.INFO, "stack.supervision")
    children.append(worker := child(tmp_path, "worker", SLEEPS))
    # One exit would be a crash loop: a held one must not count at all.
    strict = RestartPolicy(Backoff(0.05, 0.1), 30.0, loop_exits=1, loop_window_s=60.0)
    supervision = Supervision(children, strict)
    watching = asyncio.ensure_future(supervision.run())
    try:
        code = await supervision.stop_and_hold("worker")
        await logged(caplog, "worker is down (signal SIGTERM) and held")
        down = not worker.process.alive and not watching.done()

        process = supervision.release("worker")
        back = process.alive and not supervision.held("worker")
    finally:
        watching.cancel()
    assert code == -15
    assert down
    assert back
    assert "worker restarted as pid" in caplog.text and "(released)" in caplog.text


async def test_a_release_after_supervision_ended_starts_nothing(tmp_path, children):
    children.append(worker := child(tmp_path, "worker", SLEEPS))
    children.append(child(tmp_path, "consumers", "raise SystemExit(3)"))
    supervision = Supervision(children, FAST)
    supervision.hold("worker")
    worker.process.kill()

    await asyncio.wait_for(supervision.run(), 30)  # the consumers crash-loop: all stops now
    supervision.release("worker")

    assert not worker.process.alive


async def test_a_release_whose_start_fails_keeps_the_hold_and_may_be_asked_again(
    tmp_path, children
):
    children.append(worker := child(tmp_path, "worker", SLEEPS))
    supervision = Supervision(children, FAST)
    watching = asyncio.ensure_future(supervision.run())
    try:
        await supervision.stop_and_hold("worker")
        argv = worker.process.argv
        worker.process.argv = [str(tmp_path / "no-such-program")]
        with pytest.raises(OSError):
            supervision.release("worker")
        still_held = supervision.held("worker") and not worker.process.alive

        worker.process.argv = argv
        process = supervision.release("worker")
        back = process.alive and not supervision.held("worker") and not watching.done()
    finally:
        watching.cancel()
    assert still_held
    assert back
