"""`make run`: embedded servers where settings name none, then migrate, seed, worker and API.

Once all is up, an app that dies is restarted (stack.supervision); one that
crash-loops, or a dying server, stops everything with exit 1. Children run in
their own sessions, so Ctrl-C reaches only this supervisor; it then stops them
in reverse start order: API, choreography, consumers, relay, worker, payment
provider simulator, NATS, Temporal, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from settings import PROJECT_ROOT, Settings
from stack import control
from stack.banner import banner
from stack.bytecode import compile_workflows
from stack.embedded_servers import Server, nats_for, postgres_for, start_together, temporal_for
from stack.hand_over import command_line, stop_or_start
from stack.ports import LOOPBACK
from stack.preflight import check_ports, metrics_endpoints
from stack.process import ManagedProcess
from stack.restarts import RestartPolicy
from stack.supervision import Child, Supervision

logger = logging.getLogger(__name__)

_API_READY_S = 60.0  # imports alone take seconds on 2 busy cores


def project_root() -> Path:
    """The directory holding the settings package and worker.py; children run there."""
    return PROJECT_ROOT


def data_dir(settings: Settings, root: Path) -> Path:
    """Where the servers' data, the logs and the control socket live (relative: to root)."""
    return settings.data_dir if settings.data_dir.is_absolute() else root / settings.data_dir


class Supervisor:
    """Owns every child `run` starts; stop() is safe whatever start() got through."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        app_logs_to_files: bool = False,
    ) -> None:
        """`env` is the children's base environment (default: ours); with
        `app_logs_to_files` the apps log under log_dir instead of to our terminal."""
        self._settings = settings
        self._root = root
        self._env = dict(os.environ if env is None else env)
        self.data_dir = data_dir(settings, root)
        self.log_dir = self.data_dir / "logs"
        self._app_log_dir = self.log_dir if app_logs_to_files else None
        self._units: list[Child] = []
        # By process name, for whoever must kill or restart one (the chaos run).
        self.servers: dict[str, Server] = {}
        self.apps: dict[str, ManagedProcess] = {}
        # Watches what is started; the chaos run holds parts through it to kill them.
        self.supervision = Supervision(self._units, RestartPolicy.from_settings(settings))
        self.temporal_address = settings.temporal_target
        self.temporal_ui: str | None = None
        self.database_url = settings.database_target
        self.nats_url = settings.nats_target
        self.payment_provider_url = settings.payment_provider_target
        host = settings.api_host
        host = LOOPBACK if host in ("0.0.0.0", "::", "") else host
        self.api_base = f"http://{f'[{host}]' if ':' in host else host}:{settings.api_port}"

    def client_settings(self) -> Settings:
        """Settings that reach what this supervisor started (for a client beside the apps)."""
        return self._settings.model_copy(
            update={
                "temporal_address": self.temporal_address,
                "database_url": self.database_url,
                "nats_url": self.nats_url,
                "payment_provider_url": self.payment_provider_url,
            }
        )

    async def start(self) -> None:
        """Servers, then database migrations and seed, then the apps."""
        servers = self._plan_servers()
        await self._start_servers(servers)
        await _prepare_database(self.database_url)
        if self._settings.payment_provider_url is None:
            await self._start_payment_provider()
        compile_workflows()
        self._start_app("worker", [sys.executable, "worker.py"])
        self._start_app("relay", [sys.executable, "-m", "relay"])
        self._start_app("consumers", [sys.executable, "-m", "consumers"])
        self._start_app("choreography", [sys.executable, "-m", "choreography"])
        api = self._start_app("api", [sys.executable, "-m", "api"])
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:

            async def healthy() -> bool:
                return (await http.get(f"{self.api_base}/healthz")).status_code == 200

            await api.wait_ready(healthy, _API_READY_S)

    async def _start_payment_provider(self) -> None:
        # Its books outlive a restart of it, as a real provider's would.
        kept = self._settings.payment_provider_journal
        journal = kept or self.data_dir / "payment-provider.jsonl"
        simulator = self._start_app(
            "payment-provider",
            [sys.executable, "-m", "payment_provider"],
            {"SAGA_PAYMENT_PROVIDER_JOURNAL": str(journal)},
        )
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:

            async def answering() -> bool:
                url = f"{self.payment_provider_url}/admin/faults"
                return (await http.get(url)).status_code == 200

            await simulator.wait_ready(answering, _API_READY_S)

    async def hand_over(self, action: str, app: str) -> str:
        """`sagactl worker stop|start` (stack.hand_over), asked through the control socket."""
        return await stop_or_start(self.supervision, action, app, self._root, self.hand_run_command)

    def hand_run_command(self, app: str) -> str:
        """The command line that runs `app` as this supervisor does, addresses included."""
        return command_line(self.apps[app].argv, self._app_addresses(), self._env)

    async def stop(self) -> None:
        """Stop every child in reverse start order, each with its own timeout."""
        for unit in reversed(self._units):
            name = unit.process.name
            try:
                await unit.stop()
            except Exception:
                # Keep going: the servers behind it must not be left running.
                logger.exception("stopping %s failed", name)
                continue
            if unit.process.returncode is not None:
                logger.info("%s stopped (exit code %s)", name, unit.process.returncode)

    def pids(self) -> dict[str, int | None]:
        """Each process this supervisor runs, by name: its pid now (None while down)."""
        return {unit.process.name: unit.process.pid if unit.process.alive else None
                for unit in self._units}  # fmt: skip

    def kill(self) -> None:
        """SIGKILL everything at once (a second Ctrl-C)."""
        for unit in reversed(self._units):
            unit.process.kill()

    def banner(self) -> str:
        return banner(self, metrics_endpoints(self._settings))

    def _plan_servers(self) -> list[Server]:
        s, data, logs = self._settings, self.data_dir, self.log_dir
        check_ports(s)
        servers: list[Server] = []
        if s.database_url is None:
            pg = postgres_for(s, data, logs)
            servers.append(pg)
            self.database_url = pg.url
        if s.temporal_address is None:
            temporal = temporal_for(s, data, logs)
            servers.append(temporal)
            self.temporal_address, self.temporal_ui = temporal.address, temporal.ui_url
        if s.nats_url is None:
            nodes = nats_for(s, data, logs)
            servers += nodes
            self.nats_url = ",".join(node.url for node in nodes)
        return servers

    async def _start_servers(self, servers: list[Server]) -> None:
        # Registered before starting, so stop() also covers a start cut short.
        self._units += [Child(server.process, server.stop, restart=False) for server in servers]
        self.servers.update({server.process.name: server for server in servers})
        await start_together(servers)

    def _app_addresses(self) -> dict[str, str]:
        # The children then start nothing themselves and all use the same servers.
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "SAGA_PAYMENT_PROVIDER_URL": self.payment_provider_url,
        }

    def _start_app(
        self, name: str, argv: list[str], own_env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        env = {**self._env, **self._app_addresses(), **(own_env or {})}
        env.setdefault("PYTHONUNBUFFERED", "1")  # uvicorn logs to stdout, maybe a pipe
        process = ManagedProcess(name, argv, log_dir=self._app_log_dir, cwd=self._root, env=env)
        self.apps[name] = process
        # The worker may be finishing activities; uvicorn bounds its own shutdown.
        grace_s = 15.0 if name == "api" else 30.0
        self._units.append(Child(process, functools.partial(process.stop, grace_s), restart=True))
        process.start()
        return process


async def _prepare_database(url: str) -> None:
    from db.migrate import upgrade
    from db.seed import seed_demo_catalog

    await asyncio.to_thread(upgrade, url)  # alembic is blocking
    added = await seed_demo_catalog(url)
    logger.info("database migrated; demo catalog: %d products added", added)


async def _serve(supervisor: Supervisor) -> int:
    await supervisor.start()
    async with control.listening(control.socket_path(supervisor.data_dir), supervisor.hand_over):
        print(supervisor.banner(), flush=True)
        why = await supervisor.supervision.run()
    logger.error("%s", why)
    return 1


async def run(settings: Settings, *, root: Path | None = None) -> int:
    """Run everything until Ctrl-C/SIGTERM (exit 0), or until an app crash-loops or a
    server dies (exit 1)."""
    supervisor = Supervisor(settings, root or project_root())
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stopping.is_set():
            logger.warning("%s again: killing everything now", sig.name)
            supervisor.kill()
        else:
            logger.info("%s: stopping (again to kill)", sig.name)
            stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    serving = asyncio.ensure_future(_serve(supervisor))
    stop_requested = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({serving, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        return serving.result() if serving.done() else 0
    finally:
        for task in (serving, stop_requested):
            task.cancel()
        await asyncio.gather(serving, stop_requested, return_exceptions=True)
        await supervisor.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
