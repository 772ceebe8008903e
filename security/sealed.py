"""Card tokens sealed to their order: the API seals, only the payment activities open.

A token rides through Temporal (the saga's input, the charge's, the 2PC card
participant's) and, for a choreographed order, through the outbox and the
stream. Sealed with AES-256-GCM under the card token key (security.card_key),
bound to its order id, none of them holds it in clear, whatever the payload
codec setting; and the codec key, which an admin may hold to read payloads,
does not open it. Text that was never sealed (sagas started before tokens
were sealed) opens as it is.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.card_key import card_token_key
from security.codec import NONCE_BYTES, parse_key
from settings_slices import CardKeys

PREFIX = "sealed:"


class KeyNotHeld(Exception):
    """Sealed under a key this process lacks: another process, or a later release, may hold it.

    Not a ValueError: the text is not wrong, this reader is.
    """


class Sealer:
    def __init__(
        self,
        key: bytes | Callable[[], bytes],
        key_id: str = "t1",
        also_opens: Mapping[str, bytes] | None = None,
    ) -> None:
        """Seals with `key`; opens what `key` or one of `also_opens` (by key id) sealed.

        `key` may be a function, called at the first seal or open: a process
        that builds the payment activities but never runs them (a worker of
        another bulkhead) then never needs the key at all.
        """
        self._key_id = key_id
        self._key = key
        self._older = {kid: AESGCM(k) for kid, k in (also_opens or {}).items()}
        self._held: dict[str, AESGCM] | None = None

    @property
    def _aeads(self) -> dict[str, AESGCM]:
        if self._held is None:
            try:
                key = self._key() if callable(self._key) else self._key
            except ValueError as err:  # unset or unreadable here: this reader lacks it
                raise KeyNotHeld(f"the card token key: {err}") from None
            self._held = {**self._older, self._key_id: AESGCM(key)}
        return self._held

    @classmethod
    def from_keys(cls, keys: CardKeys) -> Sealer:
        older = {}
        if keys.codec_key is not None:
            # Choreographed orders' tokens were sealed with the codec key before
            # tokens had a key of their own: those still in flight must open.
            older[keys.codec_key_id] = parse_key(keys.codec_key.get_secret_value())
        return cls(lambda: card_token_key(keys), keys.card_token_key_id, older)

    def seal(self, secret: str, bound_to: str) -> str:
        """`bound_to` (the order id) is authenticated too: the text opens for that order only."""
        if not secret:  # nothing to hide: an order paid wholly with store credit
            return secret
        nonce = os.urandom(NONCE_BYTES)
        aead = self._aeads[self._key_id]
        sealed = aead.encrypt(nonce, secret.encode(), _aad(self._key_id, bound_to))
        return f"{PREFIX}{self._key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, text: str, bound_to: str) -> str:
        """The secret; text that was never sealed is returned as it is."""
        if not text.startswith(PREFIX):
            return text
        key_id, _, blob = text[len(PREFIX) :].partition(":")
        aead = self._aeads.get(key_id)
        if aead is None:
            raise KeyNotHeld(f"sealed with key {key_id!r}, which this process does not hold")
        try:
            data = base64.urlsafe_b64decode(blob)
            nonce, sealed = data[:NONCE_BYTES], data[NONCE_BYTES:]
            return aead.decrypt(nonce, sealed, _aad(key_id, bound_to)).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise ValueError(
                f"sealed text does not decrypt with key {key_id!r} for {bound_to!r}"
            ) from None


def _aad(key_id: str, bound_to: str) -> bytes:
    return f"{key_id}|{bound_to}".encode()
