"""A real Prometheus beside the chaos run: it scrapes every metrics page with the
repository's alert rules, and the run records what each alert did.

Prometheus (Debian's package, installed by `.ci/run`) is started on a port and
a directory of its own with the configuration `make run`'s processes get
(stack.prometheus_config), scraping and evaluating every `interval_s`. The
watch asks its `/api/v1/alerts` as often and keeps each alert's episodes: when
it became pending, when it fired, when it cleared. The report lays them beside
the fault timeline, and says which were still active when the run ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos.faults import Struck
from stack.ports import LOOPBACK, free_port
from stack.process import ManagedProcess
from stack.prometheus_config import ALERTS, local_targets, render

_READY_S = 30.0
# How long past its outage a fault is held to account for an alert.
AFTERMATH_S = 10.0


@dataclass
class Episode:
    """One stretch of an alert being active (pending, then maybe firing)."""

    alert: str
    labels: dict[str, str]
    pending_at_s: float
    fired_at_s: float | None = None
    cleared_at_s: float | None = None

    def summary(self, faults: Sequence[tuple[str, float, float]]) -> dict[str, Any]:
        end = self.cleared_at_s if self.cleared_at_s is not None else float("inf")
        during = [name for name, at, until in faults if self.pending_at_s <= until and at <= end]
        return {
            "alert": self.alert,
            "labels": self.labels,
            "pending_at_s": round(self.pending_at_s, 1),
            "fired_at_s": None if self.fired_at_s is None else round(self.fired_at_s, 1),
            "cleared_at_s": None if self.cleared_at_s is None else round(self.cleared_at_s, 1),
            "during_faults": during,
        }


@dataclass
class AlertLog:
    began: float
    episodes: list[Episode] = field(default_factory=list)
    _open: dict[tuple[str, tuple[tuple[str, str], ...]], Episode] = field(default_factory=dict)
    polls: int = 0
    failed_polls: int = 0

    def observe(self, alerts: Sequence[dict[str, Any]], now: float) -> None:
        """Fold one answer of `/api/v1/alerts` in: new episodes, firings, clearings."""
        at = now - self.began
        seen = set()
        for alert in alerts:
            labels = {k: str(v) for k, v in alert.get("labels", {}).items()}
            name = labels.pop("alertname", "?")
            key = (name, tuple(sorted(labels.items())))
            seen.add(key)
            episode = self._open.get(key)
            if episode is None:
                episode = self._open[key] = Episode(name, labels, at)
                self.episodes.append(episode)
            if alert.get("state") == "firing" and episode.fired_at_s is None:
                episode.fired_at_s = at
        for key in [k for k in self._open if k not in seen]:
            self._open.pop(key).cleared_at_s = at

    @property
    def active(self) -> list[Episode]:
        return list(self._open.values())


async def _poll(http: httpx.AsyncClient, url: str, log: AlertLog, every_s: float) -> None:
    while True:
        try:
            answer = (await http.get(f"{url}/api/v1/alerts")).json()
            log.observe(answer["data"]["alerts"], time.perf_counter())
            log.polls += 1
        except (httpx.HTTPError, KeyError, ValueError):
            log.failed_polls += 1
        await asyncio.sleep(every_s)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@contextlib.asynccontextmanager
async def watching(
    targets: dict[str, list[str]],
    workdir: Path,
    began: float,
    *,
    interval_s: float = 2.0,
    rules: Path = ALERTS,
) -> AsyncIterator[AlertLog]:
    """Prometheus scraping `targets` (job → host:port) with `rules` for the block, and
    the log of what its alerts did, filled in as it goes."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError("prometheus not found: install Debian's `prometheus` package")
    config = _write_config(workdir, render(targets, rules=rules, interval_s=interval_s))
    port = free_port()
    process = ManagedProcess(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        log_dir=workdir,
    )
    url = f"http://{LOOPBACK}:{port}"
    log = AlertLog(began)
    process.start()
    try:
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:

            async def ready() -> bool:
                return (await http.get(f"{url}/-/ready")).status_code == 200

            await process.wait_ready(ready, _READY_S)
            poller = asyncio.create_task(_poll(http, url, log, interval_s))
            try:
                yield log
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
    finally:
        await process.stop(10.0)


async def until_cleared(log: AlertLog, timeout_s: float, every_s: float = 1.0) -> bool:
    """Wait for every active alert to clear; False if some are still active at the end."""
    for _ in range(max(1, round(timeout_s / every_s))):
        if not log.active:
            return True
        await asyncio.sleep(every_s)
    return not log.active


def _write_config(workdir: Path, text: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(text)
    return config


class RunAlerts:
    """The run's Prometheus and its alert log, until `aclose`."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.log = AlertLog(0.0)

    async def start(self, settings: Any, log_dir: Path, began: float) -> None:
        watch = watching(local_targets(settings), log_dir / "prometheus", began)
        self.log = await self._stack.enter_async_context(watch)

    async def aclose(self) -> None:
        await self._stack.aclose()


async def start_alerts(settings: Any, log_dir: str, began: float) -> RunAlerts | None:
    if prometheus_binary() is None:
        return None
    alerting = RunAlerts()
    await alerting.start(settings, Path(log_dir), began)
    return alerting


async def alerts_after(
    alerting: RunAlerts | None, struck: list[Struck]
) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """Each alert episode beside the faults it overlapped; those still firing once the
    system had settled (given a minute to clear)."""
    if alerting is None:
        return [], [], "no alerts watched: prometheus not installed (Debian's package)"
    await until_cleared(alerting.log, timeout_s=60.0)
    # A fault's reach outlasts its outage: a restarted app takes seconds to serve
    # its page again, and a rule sees it a scrape and an evaluation later.
    windows = [(s.fault.value, s.at_s, s.at_s + s.down_s + AFTERMATH_S) for s in struck]
    episodes = [e.summary(windows) for e in alerting.log.episodes]
    firing = [f"{e.alert} {e.labels}" for e in alerting.log.active if e.fired_at_s is not None]
    return episodes, firing, None
