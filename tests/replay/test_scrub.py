"""What `sagactl fetch-history` writes: no token or id of anyone's, and it still replays."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory

from history_corpus.files import Recorded, load_all
from history_corpus.scrub import scrubbed
from security.codec import AesGcmCodec
from security.sealed import Sealer
from temporal_client import replayer

RECORDED = load_all()
SECRETS = ("order_id", "tx_id", "customer_id", "payment_token", "request_hash")


def started_input(history: WorkflowHistory) -> Payload:
    started = history.events[0].workflow_execution_started_event_attributes
    payload: Payload = started.input.payloads[0]
    return payload


def secrets_in(value: Any) -> set[str]:
    """The identifying values a workflow's input holds, however deep."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in SECRETS and isinstance(v, str) and v}
        return found.union(*(secrets_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(secrets_in(v) for v in value))
    return set()


def raw(history: WorkflowHistory) -> bytes:
    return b"".join(event.SerializeToString() for event in history.events)


def copy(history: WorkflowHistory) -> WorkflowHistory:
    return WorkflowHistory.from_json(history.workflow_id, history.to_json())


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda r: f"{r.path.parent.name}/{r.path.stem}")
async def test_a_scrubbed_history_holds_none_of_its_ids_and_still_replays(recorded: Recorded):
    secrets = secrets_in(json.loads(started_input(recorded.history).data))
    identity = recorded.history.events[0].workflow_execution_started_event_attributes.identity

    clean = await scrubbed(recorded.history, None)

    assert secrets, "nothing to scrub: the test would prove nothing"
    for secret in filter(None, (*secrets, identity)):  # a child's start has no identity
        assert secret.encode() not in raw(clean), secret
    result = await replayer().replay_workflow(clean, raise_on_replay_failure=False)
    assert result.replay_failure is None


async def test_a_sealed_token_is_scrubbed_and_the_same_history_scrubs_the_same():
    history = copy(next(r.history for r in RECORDED if r.path.stem == "confirmed"))
    payload = started_input(history)
    order = json.loads(payload.data)
    order["payment_token"] = Sealer(os.urandom(32)).seal("tok_visa", order["order_id"])
    payload.data = json.dumps(order).encode()

    clean = await scrubbed(history, None)

    scrubbed_order = json.loads(started_input(clean).data)
    assert scrubbed_order["payment_token"] == "scrubbed-payment-token-1"
    assert b"sealed:" not in raw(clean)
    assert raw(await scrubbed(history, None)) == raw(clean)  # stable placeholders


async def test_an_encrypted_history_needs_its_codec_and_is_written_decrypted():
    history = copy(RECORDED[0].history)
    codec = AesGcmCodec(os.urandom(32))
    payload = started_input(history)
    (sealed,) = await codec.encode([payload])
    payload.CopyFrom(sealed)

    with pytest.raises(ValueError, match="SAGA_PAYLOAD_CODEC_KEY"):
        await scrubbed(history, None)
    clean = await scrubbed(history, codec)
    assert started_input(clean).metadata["encoding"] == b"json/plain"
    result = await replayer().replay_workflow(clean, raise_on_replay_failure=False)
    assert result.replay_failure is None


async def test_a_payload_it_cannot_read_is_refused_not_copied():
    history = copy(RECORDED[0].history)
    started_input(history).metadata["encoding"] = b"binary/protobuf"

    with pytest.raises(ValueError, match="binary/protobuf"):
        await scrubbed(history, None)
