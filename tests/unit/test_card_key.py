"""The card token key: configured, or in dev one file per data directory for all its processes."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from security.card_key import KEY_FILE, card_token_key, dev_key
from settings import Settings
from startup import ConfigError, checked_settings

ROOT = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(os.urandom(32)).decode()


def test_in_dev_the_key_is_made_once_private_and_then_read(tmp_path):
    first = dev_key(tmp_path)

    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dev_key(tmp_path) == first and len(first) == 32
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no draft left behind


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    # Separate interpreters racing to make the file, as `make run`'s children do.
    code = "import sys; from pathlib import Path; from security.card_key import dev_key; "
    code += "print(dev_key(Path(sys.argv[1])).hex())"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}

    assert all(racer.returncode == 0 for racer in racers)
    assert keys == {dev_key(tmp_path).hex()}


def test_a_key_file_others_can_read_is_refused(tmp_path):
    dev_key(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)

    with pytest.raises(ValueError, match="readable by others"):
        dev_key(tmp_path)


def test_a_configured_key_wins_and_no_file_is_made(tmp_path):
    settings = Settings(card_token_key=SecretStr(KEY), data_dir=tmp_path)

    assert card_token_key(settings.card_keys()) == base64.b64decode(KEY)
    assert not (tmp_path / KEY_FILE).exists()


def test_outside_dev_the_programs_that_seal_or_open_need_the_key(tmp_path):
    codec = base64.b64encode(bytes(32)).decode()
    for needs in ("api", "payments"):
        with pytest.raises(ConfigError, match="SAGA_CARD_TOKEN_KEY"):
            checked_settings(needs, environment="production", payload_codec_key=codec)
    # A worker of another bulkhead starts without it: it never opens a token.
    assert checked_settings("worker", environment="production", payload_codec_key=codec)
    # And no process falls back to a key file outside dev.
    bare = Settings(environment="production", data_dir=tmp_path)
    with pytest.raises(ValueError, match="SAGA_CARD_TOKEN_KEY must be set"):
        card_token_key(bare.card_keys())
    assert not (tmp_path / KEY_FILE).exists()
    keyed = checked_settings(
        "worker", environment="production", payload_codec_key=codec, card_token_key=KEY
    )
    assert card_token_key(keyed.card_keys()) == base64.b64decode(KEY)


def test_a_malformed_key_is_refused():
    with pytest.raises(ValidationError, match="32 random bytes"):
        Settings(card_token_key=SecretStr("not-a-key"))
