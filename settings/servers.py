"""Where the servers are, and the embedded ones `make run` starts: Temporal, PostgreSQL, NATS."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr

LOOPBACK = "127.0.0.1"
# What the Temporal dev server lets one set of its SQLite store.
SqlitePragma = Literal["journal_mode", "synchronous"]


class ServerFields(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    data_dir: Path = Path(".data")
    """Where the embedded servers keep their data and logs, and `make run` its control
    socket; a second `make run` reuses it."""
    # A crashed app is restarted after a jittered delay doubling from initial to
    # cap, back to initial once it stayed up reset_after_s; crash_loop_exits
    # exits within crash_loop_window_s stop everything (1: any crash does).
    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    """`make run` restarts a crashed app after a jittered delay doubling from this."""
    restart_backoff_cap_s: float = Field(default=15.0, gt=0)
    """The longest delay before `make run` restarts a crashed app."""
    restart_reset_after_s: float = Field(default=30.0, ge=0)
    """An app up this long restarts after the initial delay again, if it crashes."""
    crash_loop_exits: int = Field(default=5, ge=1)
    """An app exiting this many times within the window stops `make run` (exit 1)."""
    crash_loop_window_s: float = Field(default=60.0, gt=0)
    """The window in which `SAGA_CRASH_LOOP_EXITS` exits stop `make run`."""

    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS")
    )
    """Temporal frontend `host:port`; unset: the embedded dev server."""
    temporal_namespace: str = "default"
    """The Temporal namespace the sagas run in."""
    temporal_port: int = 7233
    """The embedded dev server's frontend port."""
    temporal_ui_port: int = 8233
    """The embedded dev server's Web UI port."""
    # {} keeps SQLite's own (rollback journal, synchronous=FULL). bench/README.md
    # "Performance" has what each costs and what durability it trades.
    temporal_sqlite_pragmas: dict[SqlitePragma, str] = {  # pydantic copies it per instance
        "journal_mode": "wal",
        "synchronous": "normal",
    }
    """The embedded dev server's SQLite pragmas (JSON; the two it takes); `{}`: SQLite's
    own."""
    task_queue: str = "orders"
    """The sagas' task queue."""

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_DATABASE_URL", "DATABASE_URL")
    )
    """`postgresql://…` or `postgresql+asyncpg://…`; unset: the embedded PostgreSQL."""
    pg_port: int = 5433
    """The embedded PostgreSQL's port."""
    pg_database: str = "saga"
    """The embedded PostgreSQL's database."""
    # 0 would disable 2PC participants (PREPARE TRANSACTION).
    pg_max_prepared_transactions: int = 64
    """The embedded PostgreSQL's `max_prepared_transactions`, for 2PC branches."""
    # Beyond it PostgreSQL gives the slot up rather than fill the disk.
    pg_max_slot_wal_keep_mb: int = 1024
    """The most WAL the CDC relay's replication slot may hold back (embedded server)."""
    db_pool_size: int = 10
    """The API's database pool (workers: per bulkhead, below)."""

    nats_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_NATS_URL", "NATS_URL")
    )
    """The NATS server; unset: the embedded `nats-server -js`."""
    nats_port: int = 4222
    """The embedded NATS server's port."""
    # Each compose service is its own user, with the permissions of
    # deploy/nats/nats-server.conf.
    nats_user: str | None = None
    """The NATS user this process logs in as (with the password; unset: no login)."""
    nats_password: SecretStr | None = None
    """That NATS user's password."""
    # An odd count: a JetStream cluster needs a majority of its nodes up.
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    """The events stream's replicas. Above 1, `make run` starts that many embedded
    `nats-server` nodes as one JetStream cluster; an external cluster's nodes go in
    `NATS_URL`, comma-separated."""
