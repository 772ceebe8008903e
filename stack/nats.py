"""nats-server with JetStream as a child process."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nats

from security.nats_login import inbox_prefix
from stack import binaries
from stack.errors import StackError
from stack.ports import LOOPBACK
from stack.process import ManagedProcess
from stack.server import ManagedServer

logger = logging.getLogger(__name__)

_READY_DEADLINE_S = 30.0


@dataclass(frozen=True)
class NatsAuth:
    """A configuration file with users (deploy/nats/nats-server.conf), the
    environment its `$VAR`s read, and a user whose permissions allow
    `$JS.API.INFO`, to see JetStream answer."""

    config: Path
    env: Mapping[str, str] = field(default_factory=dict)
    probe_user: str = ""
    probe_password: str = ""


@dataclass(frozen=True)
class ClusterRoutes:
    """This node's place in a JetStream cluster: its name, the port its peers
    reach it on, and theirs."""

    name: str
    port: int
    peer_ports: tuple[int, ...]
    cluster: str = "saga"

    def argv(self) -> list[str]:
        routes = ",".join(f"nats://{LOOPBACK}:{port}" for port in self.peer_ports)
        return [
            "--server_name", self.name,
            "--cluster_name", self.cluster,
            "--cluster", f"nats://{LOOPBACK}:{self.port}",
            "--routes", routes,
        ]  # fmt: skip


class NatsServer(ManagedServer):
    """`nats-server -js` on 127.0.0.1, streams stored under `store_dir`; open to
    anyone unless started with `auth`; one node of a cluster with `routes`."""

    def __init__(
        self,
        port: int,
        store_dir: Path,
        log_dir: Path,
        auth: NatsAuth | None = None,
        routes: ClusterRoutes | None = None,
    ) -> None:
        self.port = port
        self.store_dir = store_dir.resolve()
        self._auth = auth
        argv = [str(binaries.nats_server())]
        if auth is not None:
            argv += ["-c", str(auth.config.resolve())]
        # After -c: the command line's address, port and store win over the file's.
        argv += ["-js", "-a", LOOPBACK, "-p", str(port), "-sd", str(self.store_dir)]
        argv += routes.argv() if routes is not None else []
        env = None if auth is None else {**os.environ, **auth.env}
        name = "nats" if routes is None else routes.name
        self.process = ManagedProcess(name, argv, log_dir=log_dir.resolve(), env=env)

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        """Start the server and wait until JetStream answers."""
        if self.process.alive:
            raise StackError(f"nats on port {self.port} is already running")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        try:
            await self.process.wait_ready(self._jetstream_answers, _READY_DEADLINE_S)
        except BaseException:
            await self.process.stop(timeout=10)
            raise
        logger.info("nats ready on %s (%s)", self.url, self.store_dir)

    async def _jetstream_answers(self) -> None:
        client = await nats.connect(
            self.url,
            allow_reconnect=False,
            connect_timeout=2,
            # nats-py retries a refused first connect by itself, 2 s apart and up
            # to 60 times; we poll on our own schedule instead.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.05,
            error_cb=_ignore,  # the default logs a traceback for every refused attempt
            **self._probe_login(),
        )
        try:
            await client.jetstream().account_info()
        finally:
            await client.close()

    def _probe_login(self) -> dict[str, str]:
        if self._auth is None:
            return {}
        user = self._auth.probe_user
        return {
            "user": user,
            "password": self._auth.probe_password,
            "inbox_prefix": inbox_prefix(user),
        }


def cluster(
    client_ports: list[int], route_ports: list[int], store_root: Path, log_dir: Path
) -> list[NatsServer]:
    """A JetStream cluster of len(client_ports) nodes, `nats-1`…, each storing under
    `store_root`/<its name>. Start them together: JetStream answers on none
    until a majority of them have met."""
    names = [f"nats-{n}" for n in range(1, len(client_ports) + 1)]
    return [
        NatsServer(
            port,
            store_root / name,
            log_dir,
            routes=ClusterRoutes(name, route, tuple(p for p in route_ports if p != route)),
        )
        for name, port, route in zip(names, client_ports, route_ports, strict=True)
    ]


async def _ignore(_error: Exception) -> None:
    """Readiness polling expects refused connections until the server is up."""
