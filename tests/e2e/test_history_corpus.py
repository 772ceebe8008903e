"""The corpus tools: recording on a throwaway stack, and fetching from a running server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from history_corpus.files import load_all
from history_corpus.record import record
from stack.cli import main
from temporal_client import replayer


async def test_recording_writes_histories_that_replay(tmp_path):
    written = await record(["confirmed", "two_phase_aborted"], tmp_path)

    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "order_saga/confirmed.json",
        "order_saga/two_phase_aborted.json",
        "two_phase_commit/aborted.json",
    ]
    recorded = load_all(tmp_path)
    assert {r.workflow_type for r in recorded} == {"OrderSaga", "TwoPhaseCommit"}
    for one in recorded:
        result = await replayer().replay_workflow(one.history, raise_on_replay_failure=False)
        assert result.replay_failure is None, one.path


async def test_an_unknown_case_is_a_message_naming_the_known_ones(tmp_path, capsys):
    code = await _in_thread(main, ["record-histories", "--case", "lost", "--out", str(tmp_path)])

    assert code == 2
    err = capsys.readouterr().err
    assert "unknown case(s) lost" in err and "confirmed" in err
    assert not list(tmp_path.iterdir())


async def test_fetch_history_copies_a_finished_saga_from_the_server(
    saga, product, settings, tmp_path, monkeypatch
):
    handle = await saga([(await product(), 1)])
    await handle.result()
    monkeypatch.setenv("TEMPORAL_ADDRESS", settings.temporal_target)

    code = await _in_thread(
        main, ["fetch-history", handle.id, "order_saga/from_server", "--out", str(tmp_path)]
    )

    assert code == 0
    (fetched,) = load_all(tmp_path)
    assert fetched.path == tmp_path / "order_saga" / "from_server.json"
    result = await replayer().replay_workflow(fetched.history, raise_on_replay_failure=False)
    assert result.replay_failure is None


async def _in_thread(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    # The CLI runs its own event loop (asyncio.run); keep it off the test's.
    import asyncio

    return await asyncio.to_thread(fn, argv)


pytestmark = pytest.mark.timeout(180)
