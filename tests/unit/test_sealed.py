"""Card tokens in choreographed orders' events: sealed under the payload key, else plain."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from security.sealed import KeyNotHeld, Sealer

ROOT = Path(__file__).resolve().parents[2]


def test_a_sealed_token_hides_the_token_and_opens_with_the_key():
    key = os.urandom(32)
    sealer = Sealer(key, "k2")

    sealed = sealer.seal("tok_visa", "o-1")

    assert "tok_visa" not in sealed and sealed.startswith("sealed:k2:")
    assert sealer.seal("tok_visa", "o-1") != sealed  # a fresh nonce each time
    assert Sealer(key, "k2").open(sealed, "o-1") == "tok_visa"


def test_without_a_key_tokens_travel_as_they_are():
    assert Sealer(None).seal("tok_visa", "o-1") == "tok_visa"
    assert Sealer(None).open("tok_visa", "o-1") == "tok_visa"


def test_a_token_sealed_under_another_key_is_refused_by_name():
    sealed = Sealer(os.urandom(32), "k1").seal("tok_visa", "o-1")

    with pytest.raises(ValueError, match="does not decrypt"):
        Sealer(os.urandom(32), "k1").open(sealed, "o-1")
    with pytest.raises(KeyNotHeld, match="'k1'"):
        Sealer(None).open(sealed, "o-1")
    with pytest.raises(KeyNotHeld, match="'k1'"):
        Sealer(os.urandom(32), "k2").open(sealed, "o-1")


def test_tampered_text_does_not_open():
    key = os.urandom(32)
    prefix, blob = Sealer(key).seal("tok_visa", "o-1").rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 1

    with pytest.raises(ValueError):
        Sealer(key).open(f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}", "o-1")


def test_a_token_opens_only_for_the_order_it_was_sealed_for():
    key = os.urandom(32)
    sealed = Sealer(key).seal("tok_visa", "o-1")

    with pytest.raises(ValueError, match="'o-2'"):
        Sealer(key).open(sealed, "o-2")


def test_the_choreography_process_names_an_unknown_service_without_a_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "choreography", "--services", "orders,billing"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "unknown service billing" in done.stderr
    assert "Traceback" not in done.stderr
