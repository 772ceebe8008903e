"""The Temporal CLI's dev server as a child process (SQLite file or in memory)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from domain.search_attributes import cli_search_attributes
from settings import SqlitePragma
from stack import binaries
from stack.errors import StackError
from stack.ports import LOOPBACK
from stack.process import ManagedProcess
from stack.server import ManagedServer

logger = logging.getLogger(__name__)

# The project's custom search attributes, registered when the dev server starts.
SEARCH_ATTRIBUTES: Final[Mapping[str, str]] = MappingProxyType(cli_search_attributes())

# The dev server's one history shard reads its transfer queue 20 times a second
# by default, so every workflow task waited ~40 ms for nothing (LIMITS.md).
DYNAMIC_CONFIG: Final[Mapping[str, str]] = MappingProxyType(
    {"history.transferProcessorMaxPollRPS": "1000"}
)

# First start on a new SQLite file creates the schema: give it room on 2 cores.
_READY_DEADLINE_S = 60.0


class TemporalDevServer(ManagedServer):
    """`temporal server start-dev` on 127.0.0.1; `db_file=None` keeps state in memory."""

    stop_timeout_s = 20.0  # a graceful SIGTERM takes ~3 s

    def __init__(
        self,
        port: int,
        ui_port: int,
        db_file: Path | None,
        log_dir: Path,
        search_attributes: Mapping[str, str] = SEARCH_ATTRIBUTES,
        headless: bool = False,
        *,
        namespace: str = "default",
        sqlite_pragmas: Mapping[SqlitePragma, str] | None = None,
    ) -> None:
        """`sqlite_pragmas` apply to the file; an in-memory store has no journal to tune."""
        self.port = port
        self.ui_port = ui_port
        self.db_file = None if db_file is None else db_file.resolve()
        self.namespace = namespace
        self.headless = headless
        self.sqlite_pragmas = dict(sqlite_pragmas or {})
        self._log_dir = log_dir.resolve()
        self.process = ManagedProcess(
            "temporal", self._argv(search_attributes), log_dir=self._log_dir
        )

    @property
    def address(self) -> str:
        """host:port of the frontend gRPC service."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.headless else f"http://{LOOPBACK}:{self.ui_port}"

    async def start(self) -> None:
        """Start the server and wait until its namespace answers."""
        if self.process.alive:
            raise StackError(f"temporal on port {self.port} is already running")
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.process.start()
        try:
            await self.process.wait_ready(self._namespace_answers, _READY_DEADLINE_S)
        except BaseException:
            await self.process.stop(timeout=10)
            raise
        logger.info("temporal ready on %s (%s)", self.address, self.db_file or "in memory")

    def _argv(self, search_attributes: Mapping[str, str]) -> list[str]:
        argv = [str(binaries.temporal_cli()), "server", "start-dev"]
        argv += ["--ip", LOOPBACK, "--port", str(self.port)]
        argv += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
            for pragma, value in self.sqlite_pragmas.items():
                argv += ["--sqlite-pragma", f"{pragma}={value}"]
        if self.namespace != "default":  # "default" always exists
            argv += ["--namespace", self.namespace]
        for name, kind in search_attributes.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for key, value in DYNAMIC_CONFIG.items():
            argv += ["--dynamic-config-value", f"{key}={value}"]
        return [*argv, "--log-level", "warn"]

    async def _namespace_answers(self) -> None:
        client = await Client.connect(self.address, namespace=self.namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.namespace)
        )
