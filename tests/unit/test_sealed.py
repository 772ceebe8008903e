"""Card tokens sealed to their order under the card token key; clear text opens as it is."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from security.sealed import KeyNotHeld, Sealer
from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(os.urandom(32)).decode()


def test_a_sealed_token_hides_the_token_and_opens_with_the_key():
    key = os.urandom(32)
    sealer = Sealer(key, "k2")

    sealed = sealer.seal("tok_visa", "o-1")

    assert "tok_visa" not in sealed and sealed.startswith("sealed:k2:")
    assert sealer.seal("tok_visa", "o-1") != sealed  # a fresh nonce each time
    assert Sealer(key, "k2").open(sealed, "o-1") == "tok_visa"


def test_a_token_never_sealed_opens_as_it_is_and_no_token_stays_empty():
    sealer = Sealer(os.urandom(32))

    # Sagas started before tokens were sealed carry them in clear.
    assert sealer.open("tok_visa", "o-1") == "tok_visa"
    assert sealer.seal("", "o-1") == ""


def test_tokens_sealed_with_the_codec_key_before_still_open_but_new_ones_do_not_use_it():
    codec_key, card_key = os.urandom(32), os.urandom(32)
    before = Sealer(codec_key, "k1").seal("tok_visa", "o-1")
    sealer = Sealer(card_key, "t1", also_opens={"k1": codec_key})

    now = sealer.seal("tok_visa", "o-1")

    assert sealer.open(before, "o-1") == "tok_visa"
    assert now.startswith("sealed:t1:")
    with pytest.raises(KeyNotHeld):
        Sealer(codec_key, "k1").open(now, "o-1")


def test_a_token_sealed_under_another_key_is_refused_by_name():
    sealed = Sealer(os.urandom(32), "k1").seal("tok_visa", "o-1")

    with pytest.raises(ValueError, match="does not decrypt"):
        Sealer(os.urandom(32), "k1").open(sealed, "o-1")
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


def test_sealers_of_one_data_dir_open_each_others_tokens(tmp_path):
    api, worker = (Sealer.from_keys(Settings(data_dir=tmp_path).card_keys()) for _ in range(2))

    assert worker.open(api.seal("tok_visa", "o-1"), "o-1") == "tok_visa"


def test_the_codec_key_does_not_open_a_token(tmp_path):
    settings = Settings(payload_codec_key=SecretStr(KEY), data_dir=tmp_path)
    sealed = Sealer.from_keys(settings.card_keys()).seal("tok_visa", "o-1")

    with pytest.raises(ValueError):
        Sealer(base64.b64decode(KEY), settings.card_token_key_id).open(sealed, "o-1")


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


def test_a_process_that_never_seals_never_needs_the_key(tmp_path):
    bare = Settings(environment="production", data_dir=tmp_path)

    sealer = Sealer.from_keys(bare.card_keys())  # built, as every worker builds the payment steps

    with pytest.raises(KeyNotHeld, match="SAGA_CARD_TOKEN_KEY"):
        sealer.seal("tok_visa", "order-1")
    with pytest.raises(KeyNotHeld):
        sealer.open("sealed:t1:AAAA", "order-1")
    assert sealer.open("tok_clear", "order-1") == "tok_clear"  # unsealed text needs no key
