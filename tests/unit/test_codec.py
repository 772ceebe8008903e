"""The payload codec: what it seals opens with its key, and nothing unencrypted gets through."""

from __future__ import annotations

import os

import pytest
from temporalio.api.common.v1 import Payload

from security.codec import AesGcmCodec, UnencryptedPayload
from temporal_client import DATA_CONVERTER

PLAIN = DATA_CONVERTER.payload_converter.to_payloads([{"payment_token": "tok_visa"}])[0]


async def test_a_sealed_payload_hides_its_data_and_opens_with_the_key():
    codec = AesGcmCodec(os.urandom(32), "k7")

    (sealed,) = await codec.encode([PLAIN])

    assert sealed.metadata["encoding"] == b"binary/encrypted" and b"tok_visa" not in sealed.data
    assert await codec.decode([sealed]) == [PLAIN]


@pytest.mark.parametrize(
    "payload",
    [PLAIN, Payload(metadata={"encoding": b"binary/null"}), Payload(data=b"no metadata")],
    ids=["json", "null", "bare"],
)
async def test_an_unencrypted_payload_is_refused_by_name(payload):
    with pytest.raises(UnencryptedPayload, match=r"not encrypted.*SAGA_PAYLOAD_CODEC_KEY"):
        await AesGcmCodec(os.urandom(32)).decode([payload])


async def test_for_display_an_unencrypted_payload_comes_back_as_sent():
    codec = AesGcmCodec(os.urandom(32))
    (sealed,) = await codec.encode([PLAIN])
    marker = Payload(metadata={"encoding": b"json/plain"}, data=b'"fraud-check"')

    assert codec.show([marker, sealed]) == [marker, PLAIN]


async def test_another_key_or_tampered_data_does_not_open():
    codec = AesGcmCodec(os.urandom(32), "k1")
    (sealed,) = await codec.encode([PLAIN])
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])

    with pytest.raises(ValueError, match="does not decrypt"):
        await AesGcmCodec(os.urandom(32), "k1").decode([sealed])
    with pytest.raises(ValueError, match="'k1'; this codec has 'k2'"):
        await AesGcmCodec(os.urandom(32), "k2").decode([sealed])
    with pytest.raises(ValueError, match="does not decrypt"):
        codec.show([tampered])
