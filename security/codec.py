"""Workflow payloads encrypted with AES-256-GCM before they reach Temporal.

Inputs, results and failure details carry card tokens and customer data;
with a key set (`SAGA_PAYLOAD_CODEC_KEY`), the server and its database only
ever see ciphertext. Each payload gets a fresh 96-bit nonce; the key id rides
in the metadata so keys can be rotated (decoding names the key it lacks).

A payload that is not encrypted is refused, not passed through: a worker with
the key must not run a workflow some client without it started (or signalled),
whoever that client is. Only the codec endpoint shows one as it is (`show`):
the Web UI sends it payloads the SDK or the server wrote unencrypted (patch
markers, say), and returning what the caller sent reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
NONCE_BYTES = 12


class UnencryptedPayload(ValueError):
    """A payload this codec did not seal, where only sealed ones are taken."""


def parse_key(text: str) -> bytes:
    """A base64 (standard or URL-safe) 32-byte key, or a ValueError saying what is wrong."""
    wanted = "must be the base64 of 32 random bytes (AES-256)"
    try:
        key = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{wanted}; it is not base64") from err
    if len(key) != 32:
        raise ValueError(f"{wanted}; it decodes to {len(key)} bytes")
    return key


class AesGcmCodec(PayloadCodec):
    def __init__(self, key: bytes, key_id: str = "k1") -> None:
        self._aead = AESGCM(key)
        self._key_id = key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]

    def show(self, payloads: Sequence[Payload]) -> list[Payload]:
        """For display: encrypted payloads decrypted, any other returned as it is."""
        return [p if p.metadata.get("encoding") != ENCODING else self._open(p) for p in payloads]

    def _seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, "encryption-key-id": self._key_id.encode()},
            data=nonce + sealed,
        )

    def _open(self, payload: Payload) -> Payload:
        encoding = payload.metadata.get("encoding")
        if encoding != ENCODING:
            shown = (encoding or b"none").decode(errors="replace")[:40]
            raise UnencryptedPayload(
                f"refusing a payload that is not encrypted (encoding {shown!r}): with "
                "SAGA_PAYLOAD_CODEC_KEY set, only payloads encrypted with it are taken; its "
                "writer (a client, a worker or the CLI) runs without the key"
            )
        key_id = payload.metadata.get("encryption-key-id", b"").decode()
        if key_id != self._key_id:
            raise ValueError(f"payload sealed with key {key_id!r}; this codec has {self._key_id!r}")
        try:
            plain = self._aead.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag as err:
            raise ValueError("payload does not decrypt with this key") from err
        return Payload.FromString(plain)
