"""Every entry point refuses bad settings in one line, naming the variable, echoing no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD_KEY = "Qx7secretPART9zzWq"  # not 32 bytes of base64: refused, and must not be shown
ENTRY_POINTS = {
    "python -m api": [sys.executable, "-m", "api"],
    "worker.py": [sys.executable, "worker.py"],
    "python -m relay": [sys.executable, "-m", "relay"],
    "python -m consumers": [sys.executable, "-m", "consumers"],
    "python -m choreography": [sys.executable, "-m", "choreography"],
    "python -m payment_provider": [sys.executable, "-m", "payment_provider"],
    "python -m dual_write": [
        *(sys.executable, "-m", "dual_write"),
        *("outbox", "sku", "1", "--request-id", "r"),
    ],
    "sagactl": [sys.executable, "-m", "stack", "migrate"],
}


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    for name in ("TEMPORAL_ADDRESS", "DATABASE_URL", "NATS_URL"):
        clean.pop(name, None)
    return subprocess.run(
        command, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def fragments(secret: str, size: int = 5) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


@pytest.mark.parametrize("program", sorted(ENTRY_POINTS))
def test_a_malformed_key_is_one_line_that_shows_none_of_it(program):
    done = run(ENTRY_POINTS[program], SAGA_PAYLOAD_CODEC_KEY=BAD_KEY)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    (line,) = lines
    assert line.startswith(f"{program.split()[-1] if program == 'sagactl' else program}")
    assert "SAGA_PAYLOAD_CODEC_KEY" in line and "32 random bytes" in line
    assert not [part for part in fragments(BAD_KEY) if part in done.stderr + done.stdout]


def test_a_malformed_key_list_is_named_without_its_value():
    done = run(ENTRY_POINTS["python -m api"], SAGA_API_ORDER_KEYS='["k-9f2e3d1c", unquoted')

    assert done.returncode == 2
    assert done.stderr.strip() == (
        'python -m api: SAGA_API_ORDER_KEYS: not valid JSON (a list is written ["a", "b"])'
    )


def test_production_api_without_keys_names_the_variables():
    done = run(ENTRY_POINTS["python -m api"], SAGA_ENVIRONMENT="production")

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "python -m api: SAGA_ENVIRONMENT=production needs SAGA_API_READ_KEYS or"
        " SAGA_API_ORDER_KEYS or SAGA_API_ADMIN_KEYS; and SAGA_PAYLOAD_CODEC_KEY; and"
        " SAGA_CARD_TOKEN_KEY (not set)"
    )


def test_production_worker_without_a_codec_key_says_so():
    done = run(ENTRY_POINTS["worker.py"], SAGA_ENVIRONMENT="production")

    assert done.returncode == 2
    assert "worker.py: SAGA_ENVIRONMENT=production needs SAGA_PAYLOAD_CODEC_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_plain_value_is_shown_to_help_fix_it():
    done = run(ENTRY_POINTS["python -m relay"], SAGA_RELAY_BATCH_SIZE="lots")

    assert done.returncode == 2
    assert "SAGA_RELAY_BATCH_SIZE: Input should be a valid integer" in done.stderr
    assert "(got 'lots')" in done.stderr


CODEC = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "worker.py", "--bulkhead", "payments"],
        [sys.executable, "-m", "choreography", "--services", "payments"],
    ],
    ids=["payments worker", "payments handlers"],
)
def test_only_the_payments_service_needs_the_card_key(command):
    done = run(command, SAGA_ENVIRONMENT="production", SAGA_PAYLOAD_CODEC_KEY=CODEC)

    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "SAGA_ENVIRONMENT=production needs SAGA_CARD_TOKEN_KEY (not set)"
    )
