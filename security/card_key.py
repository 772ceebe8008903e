"""The key card tokens are sealed with (security.sealed): configured, or in dev a file of its own.

It is not the payload codec key: whoever holds that one (an admin decoding
payloads through `/codec/decode` or the Web UI) must still not read tokens.
`SAGA_CARD_TOKEN_KEY` sets it, and outside dev the programs that seal or
open tokens refuse to start without it (startup.PRODUCTION_NEEDS). In dev,
unset, every process of one data directory (`make run`'s children, a test
session's pieces) reads the same key from
`<data dir>/card-token.key`, made by whichever process needs it first.
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
from pathlib import Path

from security.codec import parse_key
from settings_slices import CardKeys

KEY_FILE = "card-token.key"


def card_token_key(keys: CardKeys) -> bytes:
    """The configured key, or in dev the data directory's; outside dev it must be configured."""
    if keys.card_token_key is not None:
        return parse_key(keys.card_token_key.get_secret_value())
    if keys.environment != "dev":  # startup refuses this already; never fall back to a file
        raise ValueError("SAGA_CARD_TOKEN_KEY must be set outside dev mode (SAGA_ENVIRONMENT)")
    return dev_key(keys.data_dir)


def dev_key(directory: Path) -> bytes:
    """`directory`'s key, made once: concurrent first callers all end with the same one."""
    path = directory / KEY_FILE
    if not path.exists():
        _make(path)
    return _read(path)


def _make(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    # Written whole under a name of its own, then linked into place: a reader
    # never sees half a key, and link (unlike rename) keeps a key already there.
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
            out.flush()
            os.fsync(out.fileno())
        # Made first by another process: its key is everyone's.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(
            f"{path} is readable by others (mode {mode:o}): `chmod 600` it, or set "
            "SAGA_CARD_TOKEN_KEY"
        )
    try:
        return parse_key(path.read_text().strip())
    except ValueError as err:
        raise ValueError(f"{path}: the card token key {err}") from None
