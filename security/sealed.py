"""Secrets inside events: a card token sealed with the payload key before it enters the outbox.

A choreographed order's events carry its card token to the payments service
(domain.choreography). The stream, the outbox and every consumer would see it
in clear; sealed with AES-256-GCM under `SAGA_PAYLOAD_CODEC_KEY` (the key
Temporal payloads use), only a holder of the key reads it. Without a key the
token travels as it is, as it does through Temporal then.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.codec import NONCE_BYTES, parse_key
from settings import Settings

PREFIX = "sealed:"


class KeyNotHeld(Exception):
    """Sealed under a key this process lacks: another process, or a later release, may hold it.

    Not a ValueError: the text is not wrong, this reader is.
    """


class Sealer:
    def __init__(self, key: bytes | None, key_id: str = "k1") -> None:
        self._aead = AESGCM(key) if key is not None else None
        self._key_id = key_id

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        key = settings.payload_codec_key
        return cls(
            parse_key(key.get_secret_value()) if key else None, settings.payload_codec_key_id
        )

    def seal(self, secret: str, bound_to: str) -> str:
        """`bound_to` (the order id) is authenticated too: the text opens for that order only."""
        if self._aead is None or not secret:
            return secret
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), _aad(self._key_id, bound_to))
        return f"{PREFIX}{self._key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, text: str, bound_to: str) -> str:
        """The secret; text that was never sealed is returned as it is."""
        if not text.startswith(PREFIX):
            return text
        key_id, _, blob = text[len(PREFIX) :].partition(":")
        if self._aead is None or key_id != self._key_id:
            raise KeyNotHeld(f"sealed with key {key_id!r}, which this process does not hold")
        data = base64.urlsafe_b64decode(blob)
        nonce, sealed = data[:NONCE_BYTES], data[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, _aad(key_id, bound_to)).decode()
        except InvalidTag as err:
            raise ValueError(
                f"sealed text does not decrypt with this key for {bound_to!r}"
            ) from err


def _aad(key_id: str, bound_to: str) -> bytes:
    return f"{key_id}|{bound_to}".encode()
