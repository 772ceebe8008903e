"""A history from a real server, made fit for the corpus: no card token, no id of anyone's.

`sagactl fetch-history` copies a saga as it ran (to keep it replaying after
every change), and the corpus is committed. So every value of a payload field
named `*_id` (order, customer, payment, shipment, the 2PC's `tx_id`...),
`payment_token` (sealed or, in sagas started before tokens were sealed, in
clear) or `request_hash` (a digest of the request, token included) becomes a
placeholder, `scrubbed-<field>-<n>`, numbered in order of first appearance.
Each is replaced wherever it appears, whole or inside a longer string (the
step keys `order-<id>:<step>`, the coordinator's workflow id `tpc-<id>`,
summaries, failure messages, search attributes), so the history still
replays: what the workflow derives from its scrubbed input matches the
scrubbed events. Worker identities (`pid@host`, also inside sticky task
queue names) go the same way.

Encrypted payloads are decrypted first (the copy is then readable by the
replayer without a key), which needs the codec that wrote them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec

from security.codec import ENCODING as ENCRYPTED

JSON_ENCODINGS = (b"json/plain", b"json/protobuf")
# Whole values that are other values with a prefix: scrubbed through the id within.
DERIVED = frozenset({"correlation_id", "workflow_id"})
SECRET_FIELDS = frozenset({"payment_token", "request_hash"})
# Ids the SDK numbers itself (a local activity marker's, checked on replay): they name nothing.
SDK_IDS = frozenset({"activity_id"})


async def scrubbed(history: WorkflowHistory, codec: PayloadCodec | None) -> WorkflowHistory:
    """A copy of `history`, decrypted, with every token and id replaced by its placeholder."""
    events = [type(e).FromString(e.SerializeToString()) for e in history.events]
    for event in events:
        for payload in _payloads(event):
            await _decrypt(payload, codec)
    replacing = _Placeholders()
    for event in events:
        for payload in _payloads(event):
            replacing.collect(_json_of(payload))
        for identity in _identities(event):
            replacing.add(identity, "worker")
    for event in events:
        replacing.apply(event)
    return WorkflowHistory(replacing.text(history.workflow_id), events)


async def _decrypt(payload: Payload, codec: PayloadCodec | None) -> None:
    if payload.metadata.get("encoding") != ENCRYPTED:
        return
    if codec is None:
        raise ValueError(
            "the history is encrypted: set SAGA_PAYLOAD_CODEC_KEY to the key it was written "
            "with to fetch it"
        )
    (plain,) = await codec.decode([payload])
    payload.CopyFrom(plain)


def _json_of(payload: Payload) -> Any:
    encoding = payload.metadata.get("encoding", b"")
    if encoding == b"binary/null":
        return None
    if encoding not in JSON_ENCODINGS:
        # Unreadable here, so it could hold anything: not copied blind.
        shown = encoding.decode(errors="replace")[:40]
        raise ValueError(f"a payload with encoding {shown!r} cannot be scrubbed")
    return json.loads(payload.data)


class _Placeholders:
    def __init__(self) -> None:
        self._by_value: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._pattern: re.Pattern[str] | None = None

    def collect(self, value: Any, field: str = "") -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self.collect(item, str(key))
        elif isinstance(value, list):
            for item in value:
                self.collect(item, field)
        elif isinstance(value, str) and value and _identifying(field):
            self.add(value, field.removesuffix("_id").replace("_", "-"))

    def add(self, value: str, kind: str) -> None:
        if not value or value in self._by_value:
            return
        n = self._counts[kind] = self._counts.get(kind, 0) + 1
        self._by_value[value] = f"scrubbed-{kind}-{n}"
        self._pattern = None

    def text(self, value: str) -> str:
        if not self._by_value:
            return value
        if self._pattern is None:
            # Longest first; never inside a longer word (a short id in a uuid's hex).
            alternatives = sorted(self._by_value, key=len, reverse=True)
            joined = "|".join(re.escape(v) for v in alternatives)
            self._pattern = re.compile(f"(?<![A-Za-z0-9])(?:{joined})(?![A-Za-z0-9])")
        return self._pattern.sub(lambda m: self._by_value[m.group(0)], value)

    def apply(self, message: Message) -> None:
        if isinstance(message, Payload):
            self._apply_to_payload(message)
            return
        for field, value in message.ListFields():
            if field.type == FieldDescriptor.TYPE_STRING:
                self._apply_to_strings(message, field, value)
            elif field.message_type is not None:
                for child in _children(field, value):
                    self.apply(child)

    def _apply_to_strings(self, message: Message, field: FieldDescriptor, value: Any) -> None:
        if field.is_repeated:
            value[:] = [self.text(v) for v in value]
        else:
            setattr(message, field.name, self.text(value))

    def _apply_to_payload(self, payload: Payload) -> None:
        before = _json_of(payload)
        after = self._in_json(before)
        if after != before:
            # Compact, as the SDK's pydantic converter writes it.
            payload.data = json.dumps(after, separators=(",", ":"), ensure_ascii=False).encode()

    def _in_json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self._in_json(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._in_json(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def _identifying(field: str) -> bool:
    return field in SECRET_FIELDS or (
        field.endswith("_id") and field not in DERIVED and field not in SDK_IDS
    )


def _children(field: FieldDescriptor, value: Any) -> list[Message]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return [v for v in value.values() if isinstance(v, Message)]
    return list(value) if field.is_repeated else [value]


def _identities(message: Message) -> Iterator[str]:
    for field, value in message.ListFields():
        if field.name == "identity" and field.type == FieldDescriptor.TYPE_STRING:
            yield str(value)
        elif field.message_type is not None and not isinstance(message, Payload):
            for child in _children(field, value):
                yield from _identities(child)


def _payloads(message: Message) -> Iterator[Payload]:
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is not None:
            for child in _children(field, value):
                yield from _payloads(child)
