"""The embedded dev server's SQLite store: the pragmas in settings reach it, and a
workflow started on it outlives a SIGKILL of the server (a process crash)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from settings import Settings
from stack.ports import free_port
from stack.temporal import TemporalDevServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

_WAL_FORMAT = 2  # bytes 18 and 19 of an SQLite header: 1 rollback journal, 2 WAL


def journal_format(db_file: Path) -> tuple[int, int]:
    header = db_file.read_bytes()[:20]
    return header[18], header[19]


async def test_the_default_pragmas_put_the_store_in_wal_and_a_kill_loses_no_started_workflow(
    tmp_path,
):
    pragmas = Settings().temporal_sqlite_pragmas
    db_file = tmp_path / "temporal.db"
    server = TemporalDevServer(
        free_port(), free_port(), db_file, tmp_path / "logs", headless=True, sqlite_pragmas=pragmas
    )
    await server.start()
    try:
        client = await Client.connect(server.address)
        # No worker polls this queue: the workflow stays open, only its start is stored.
        handle = await client.start_workflow(
            "NoSuchWorkflow", id=f"sqlite-{uuid.uuid4()}", task_queue=f"q-{uuid.uuid4()}"
        )
        assert journal_format(db_file) == (_WAL_FORMAT, _WAL_FORMAT)

        await server.restart(hard=True)  # SIGKILL, then the same file again

        client = await Client.connect(server.address)
        described = await client.get_workflow_handle(handle.id).describe()
    finally:
        await server.stop()
    assert described.status == WorkflowExecutionStatus.RUNNING
