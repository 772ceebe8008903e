"""An embedded PostgreSQL of a benchmark's own, on a free port in a temporary directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from stack.ports import free_port
from stack.postgres import EmbeddedPostgres


def own_postgres(prefix: str) -> tuple[EmbeddedPostgres, Path]:
    """The server (not started) and the directory its data and logs go to."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = EmbeddedPostgres(
        data_dir=workdir / "pg",
        port=free_port(),
        database="bench",
        max_prepared_transactions=8,
        log_dir=workdir / "logs",
    )
    return server, workdir
