"""The corpus tools: recording on a throwaway stack, and fetching from a running server."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from history_corpus.files import load_all
from history_corpus.record import record
from stack.cli import main
from temporal_client import replayer
from tests import factories


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


async def test_fetch_history_writes_no_token_or_id_and_still_replays(
    saga, product, engine, settings, tmp_path, monkeypatch
):
    token = f"tok_recognisable_{uuid.uuid4().hex}"
    customer = await factories.insert_wallet(
        engine, balance=1000, customer_id=f"cust-recognisable-{uuid.uuid4().hex[:8]}"
    )
    handle = await saga([(await product(), 1)], token, customer_id=customer, store_credit=400)
    await handle.result()
    order_id = handle.id.removeprefix("order-")
    monkeypatch.setenv("TEMPORAL_ADDRESS", settings.temporal_target)

    for workflow_id, name in (
        (handle.id, "order_saga/x"),
        (f"tpc-{order_id}", "two_phase_commit/x"),
    ):
        argv = ["fetch-history", workflow_id, name, "--out", str(tmp_path)]
        assert await _in_thread(main, argv) == 0

    fetched = load_all(tmp_path)
    assert {f.workflow_type for f in fetched} == {"OrderSaga", "TwoPhaseCommit"}
    for one in fetched:
        # Payload data is base64 in the file: look at the events' bytes as well.
        raw = b"".join(e.SerializeToString() for e in one.history.events)
        text = one.path.read_text()
        for secret in (token, customer, order_id):
            assert secret not in text and secret.encode() not in raw, (one.path, secret)
        assert b"scrubbed-customer-1" in raw  # replaced, not dropped
        result = await replayer().replay_workflow(one.history, raise_on_replay_failure=False)
        assert result.replay_failure is None, one.path


async def _in_thread(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    # The CLI runs its own event loop (asyncio.run); keep it off the test's.
    import asyncio

    return await asyncio.to_thread(fn, argv)


pytestmark = pytest.mark.timeout(180)
