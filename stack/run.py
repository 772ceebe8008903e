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
import shlex
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from settings import PROJECT_ROOT, Settings
from stack import control
from stack.bytecode import compile_workflows
from stack.errors import StackError
from stack.nats import NatsServer
from stack.nats import cluster as nats_cluster
from stack.ports import LOOPBACK, free_port
from stack.postgres import EmbeddedPostgres
from stack.preflight import check_ports, metrics_endpoints
from stack.process import ManagedProcess
from stack.restarts import RestartPolicy, describe_exit
from stack.supervision import Child, Supervision
from stack.temporal import SEARCH_ATTRIBUTES, TemporalDevServer

logger = logging.getLogger(__name__)

_API_READY_S = 60.0  # imports alone take seconds on 2 busy cores


class Server(Protocol):
    process: ManagedProcess

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def project_root() -> Path:
    """The directory holding the settings package and worker.py; children run there."""
    return PROJECT_ROOT


def data_dir(settings: Settings, root: Path) -> Path:
    """Where the servers' data, the logs and the control socket live (relative: to root)."""
    return settings.data_dir if settings.data_dir.is_absolute() else root / settings.data_dir


def redact_url(url: str) -> str:
    """The URL with its password replaced, for banners and messages; each of a
    comma-separated list (a cluster's nodes)."""
    if "," in url:
        return ",".join(redact_url(one) for one in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
        """`sagactl worker stop|start`: hold the worker stopped for an operator, or take it back."""
        if app != "worker":
            raise StackError(f"only the worker is handed over, not {app!r}")
        if action == "start":
            held = self.supervision.held(app)
            process = self.supervision.release(app)
            state = "back under `sagactl run`" if held else "was not stopped; running"
            return f"{app} {state} as pid {process.pid}"
        if action != "stop":
            raise StackError(f"unknown action {action!r}: stop or start")
        if self.supervision.held(app):
            return f"{app} is already stopped; `sagactl worker start` hands it back"
        code = await self.supervision.stop_and_hold(app)
        logger.warning("%s stopped for an operator; held until `sagactl worker start`", app)
        return (
            f"{app} stopped ({describe_exit(code)}); `sagactl run` keeps it stopped until "
            f"`sagactl worker start`.\nTo run it by hand with the same settings, from "
            f"{self._root} in this shell:\n  {self.hand_run_command(app)}"
        )

    def hand_run_command(self, app: str) -> str:
        """The command line that runs `app` as this supervisor does, addresses included."""
        # Only what the caller's environment does not already say: never a secret of theirs.
        told = {k: v for k, v in self._app_addresses().items() if self._env.get(k) != v}
        assignments = [f"{k}={shlex.quote(redact_url(v))}" for k, v in told.items()]
        return " ".join([*assignments, shlex.join(self.apps[app].argv)])

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
        temporal = (
            f"  Temporal UI  {self.temporal_ui}"
            if self.temporal_ui
            else f"  Temporal     {self.temporal_address} (not started here)"
        )
        lines = [
            "",
            "The saga orchestrator is running.",
            f"  API docs     {self.api_base}/docs",
            temporal,
            f"  PostgreSQL   {redact_url(self.database_url)}",
            f"  NATS         {redact_url(self.nats_url)}",
            f"  Payments     {self.payment_provider_url}/docs (simulator: POST /admin/faults)",
            *self._metrics_lines(),
            f"  Server logs  {self.log_dir}",
            "A crashed app is restarted. `sagactl worker stop` hands the worker over to you "
            "(`sagactl worker start` takes it back).",
            "Ctrl-C stops everything.",
            "",
        ]
        return "\n".join(lines)

    def _metrics_lines(self) -> list[str]:
        urls = [
            f"http://{host}:{port}/metrics ({name})"
            for name, host, port in metrics_endpoints(self._settings)
        ]
        return [f"  {'Metrics' if n == 0 else '':<12} {url}" for n, url in enumerate(urls)]

    def _plan_servers(self) -> list[Server]:
        s, data, logs = self._settings, self.data_dir, self.log_dir
        check_ports(s)
        servers: list[Server] = []
        if s.database_url is None:
            pg = EmbeddedPostgres(
                data / "postgres",
                s.pg_port,
                s.pg_database,
                s.pg_max_prepared_transactions,
                logs,
                s.pg_max_slot_wal_keep_mb,
            )
            servers.append(pg)
            self.database_url = pg.url
        if s.temporal_address is None:
            temporal = TemporalDevServer(
                s.temporal_port,
                s.temporal_ui_port,
                data / "temporal.db",
                logs,
                SEARCH_ATTRIBUTES,
                namespace=s.temporal_namespace,
                sqlite_pragmas=s.temporal_sqlite_pragmas,
            )
            servers.append(temporal)
            self.temporal_address, self.temporal_ui = temporal.address, temporal.ui_url
        if s.nats_url is None and s.nats_stream_replicas > 1:
            # Node 1 on the configured port, the others and every route on free ones.
            extra = [free_port() for _ in range(s.nats_stream_replicas - 1)]
            routes = [free_port() for _ in range(s.nats_stream_replicas)]
            nodes = nats_cluster([s.nats_port, *extra], routes, data / "nats-cluster", logs)
            servers += nodes
            self.nats_url = ",".join(node.url for node in nodes)
        elif s.nats_url is None:
            nats = NatsServer(s.nats_port, data / "nats", logs)
            servers.append(nats)
            self.nats_url = nats.url
        return servers

    async def _start_servers(self, servers: list[Server]) -> None:
        # Registered before starting, so stop() also covers a start cut short.
        self._units += [Child(server.process, server.stop, restart=False) for server in servers]
        self.servers.update({server.process.name: server for server in servers})
        # Concurrently: they don't depend on each other, and startup is mostly waiting.
        results = await asyncio.gather(*(s.start() for s in servers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

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
