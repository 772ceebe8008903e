"""`sagactl run` (what `make run` calls) as a person uses it: start, order, stop, start again;
a crashed worker restarted under in-flight sagas, a crash loop, a stop mid-backoff, and the
worker handed over to an operator and back."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from db.engine import create_engine
from stack.ports import free_port, port_in_use
from tests import factories
from tests.alert_rules import watched_metrics
from tests.factories import eventually
from tests.prometheus import samples

pytestmark = pytest.mark.asyncio
READY_LINE = "Ctrl-C stops everything."
ROOT = Path(__file__).resolve().parents[2]
# A setting only the worker reads: it exits at once (code 2), the rest run on.
BROKEN_WORKER = {"SAGA_WORKER_BULKHEADS": "no-such-bulkhead"}
SERVING = "worker serving task queue 'orders'"  # the supervised worker's log, in ours


class RunCommand:
    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.ports = {
            "SAGA_TEMPORAL_PORT": free_port(),
            "SAGA_TEMPORAL_UI_PORT": free_port(),
            "SAGA_PG_PORT": free_port(),
            "SAGA_NATS_PORT": free_port(),
            "SAGA_API_PORT": free_port(),
            "SAGA_PAYMENT_PROVIDER_PORT": free_port(),
            "SAGA_WORKER_METRICS_PORT": free_port(),
            "SAGA_RELAY_METRICS_PORT": free_port(),
            "SAGA_CONSUMERS_METRICS_PORT": free_port(),
            "SAGA_CHOREOGRAPHY_METRICS_PORT": free_port(),
        }
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("TEMPORAL_ADDRESS", "DATABASE_URL", "NATS_URL")
            and not key.startswith("SAGA_")
        }
        self.env.update({k: str(v) for k, v in self.ports.items()}, SAGA_DATA_DIR=str(data_dir))
        self.env.update(settings)
        self.output = ""
        self.proc: subprocess.Popen[str] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['SAGA_API_PORT']}"

    @property
    def provider(self) -> str:
        return f"http://127.0.0.1:{self.ports['SAGA_PAYMENT_PROVIDER_PORT']}"

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.ports['SAGA_PG_PORT']}/saga"

    def pids(self, name: str) -> list[int]:
        """Every pid `name` ran as, in order, from the supervisor's log."""
        found = re.findall(rf"(?:started {name} \(pid |{name} restarted as pid )(\d+)", self.output)
        return list(dict.fromkeys(int(pid) for pid in found))  # a restart logs both

    def all_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"started \S+ \(pid (\d+)\)", self.output)]

    async def said(self, text: str, deadline_s: float = 60) -> str:
        return await eventually(
            lambda: asyncio.sleep(0, self.output), lambda out: text in out, deadline_s
        )

    async def sagactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "stack", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    async def start(self) -> str:
        self.output = ""
        # Popen only forks; the output is read in a thread below.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "stack", "run"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        while READY_LINE not in self.output:
            line = await asyncio.to_thread(self.proc.stdout.readline)
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"run did not come up:\n{self.output[-3000:]}")
            self.output += line
        # Keep reading (the log is asserted on), so the children never block on a full pipe.
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        return self.output

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            self.output += line

    async def stop(self, sig: signal.Signals = signal.SIGTERM, within_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await self.exited(within_s)

    async def exited(self, within_s: float = 60) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, within_s)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunCommand]:
    """One `sagactl run` for the tests that leave it running as they found it."""
    run = RunCommand(tmp_path_factory.mktemp("run") / "data")
    await run.start()
    try:
        yield run
    finally:
        assert await run.stop() == 0, run.output[-3000:]


async def scrape(http: httpx.AsyncClient, port: int) -> str:
    return (await http.get(f"http://127.0.0.1:{port}/metrics")).text


async def scrape_when_up(http: httpx.AsyncClient, port: int) -> str:
    """The page, or "" while its process has not opened it yet: the consumers serve
    theirs once NATS and the stream answer, which may be after the API does."""
    try:
        return await scrape(http, port)
    except httpx.ConnectError:
        return ""


async def place_order(
    http: httpx.AsyncClient, sku: str | None = None, quantity: int = 1, customer: str = "run-test"
) -> str:
    sku = sku or (await http.get("/products")).json()[0]["sku"]
    body = {
        "customer_id": customer,
        "items": [{"sku": sku, "quantity": quantity}],
        "payment_token": "tok_ok",
    }
    accepted = await http.post("/orders", json=body)
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["order_id"])


async def order_of(http: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    answer = await http.get(f"/orders/{order_id}")
    assert answer.status_code == 200, answer.text  # the API serves whatever else is down
    return dict(answer.json())


async def confirmed(http: httpx.AsyncClient, order_id: str, deadline_s: float = 30) -> Any:
    return await eventually(
        lambda: order_of(http, order_id), lambda o: o["status"] == "CONFIRMED", deadline_s
    )


async def place_and_confirm(api: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        return dict(await confirmed(http, await place_order(http)))


async def test_run_serves_orders_stops_cleanly_and_keeps_them(tmp_path):
    run = RunCommand(tmp_path / "data")

    banner = await run.start()
    order = await place_and_confirm(run.api)
    provider = f"http://127.0.0.1:{run.ports['SAGA_PAYMENT_PROVIDER_PORT']}"
    async with httpx.AsyncClient(base_url=provider) as http:
        books = (await http.get("/v1/payments", params={"order_id": order["order_id"]})).json()
        metrics = await scrape(http, run.ports["SAGA_WORKER_METRICS_PORT"])
        # The read model applied the order's events; the choreography's page answers.
        projected = await eventually(
            lambda: scrape_when_up(http, run.ports["SAGA_CONSUMERS_METRICS_PORT"]),
            lambda text: (
                sum(samples(text, "saga_consumer_messages_total", outcome="applied")) >= 5
                and samples(text, "saga_consumer_pending_messages", consumer="order-history") == [0]
            ),
        )
        choreography = await eventually(
            lambda: scrape_when_up(http, run.ports["SAGA_CHOREOGRAPHY_METRICS_PORT"]), bool
        )
    exit_code = await run.stop()

    assert f"{run.api}/docs" in banner
    assert f"http://127.0.0.1:{run.ports['SAGA_TEMPORAL_UI_PORT']}" in banner
    assert f"http://127.0.0.1:{run.ports['SAGA_PAYMENT_PROVIDER_PORT']}/docs" in banner
    for name in ("worker", "relay", "consumers", "choreography"):
        port = run.ports[f"SAGA_{name.upper()}_METRICS_PORT"]
        assert f"http://127.0.0.1:{port}/metrics ({name})" in banner
    assert [c["amount"] for c in books["captures"]] == [order["total"]]
    assert samples(metrics, "saga_circuit_breaker_state") == [0]  # closed
    assert samples(projected, "saga_consumer_messages_total", outcome="poison") == [0]
    assert samples(choreography, "saga_choreography_overdue_orders") == [0]
    assert len(samples(choreography, "saga_consumer_pending_messages")) == 4  # one per service
    assert "saga_confirmed_total" in metrics
    assert exit_code == 0
    assert not any(port_in_use(port) for port in run.ports.values())

    await run.start()
    try:
        async with httpx.AsyncClient(base_url=run.api) as http:
            again = (await http.get(f"/orders/{order['order_id']}")).json()
            listed = (await http.get("/orders", params={"customer_id": "run-test"})).json()
    finally:
        assert await run.stop(signal.SIGINT) == 0
    assert again["status"] == "CONFIRMED"
    assert [o["order_id"] for o in listed] == [order["order_id"]]


async def test_a_crash_looping_worker_stops_everything_naming_it(tmp_path):
    run = RunCommand(
        tmp_path / "data",
        **BROKEN_WORKER,
        SAGA_CRASH_LOOP_EXITS="3",
        SAGA_RESTART_BACKOFF_INITIAL_S="0.1",
        SAGA_RESTART_BACKOFF_CAP_S="0.2",
    )
    await run.start()

    code = await run.exited(within_s=120)

    assert code == 1
    assert re.search(
        r"worker is crash-looping \(3 exits within \d+s, the last with exit code 2\): "
        r"stopping everything",
        run.output,
    ), run.output[-3000:]
    assert all(gone(pid) for pid in run.all_pids())
    assert not any(port_in_use(port) for port in run.ports.values())


async def test_sigterm_during_a_restart_backoff_stops_everything_at_once(tmp_path):
    run = RunCommand(
        tmp_path / "data",
        **BROKEN_WORKER,
        SAGA_RESTART_BACKOFF_INITIAL_S="120",
        SAGA_RESTART_BACKOFF_CAP_S="120",
    )
    await run.start()
    await run.said("worker exited on its own (exit code 2); restarting it in")

    code = await run.stop(signal.SIGTERM, within_s=45)  # the backoff is 60 s or more

    assert code == 0
    assert all(gone(pid) for pid in run.all_pids())
    assert not any(port_in_use(port) for port in run.ports.values())


async def test_a_killed_worker_is_restarted_and_its_sagas_in_flight_finish_once(running):
    run = running
    engine = create_engine(run.database_url, pool_size=1)
    sku = await factories.insert_product(engine, stock=20, price=1500)
    quantities = [1, 2, 3]
    async with httpx.AsyncClient(base_url=run.provider) as provider:
        # Every order's authorization held at the provider: all three are mid-step.
        fault = {"mode": "latency", "seconds": 4, "path_contains": "/v1/authorizations",
                 "count": len(quantities)}  # fmt: skip
        assert (await provider.post("/admin/faults", json=fault)).status_code == 201
        async with httpx.AsyncClient(base_url=run.api, timeout=10) as http:
            orders = [await place_order(http, sku, q, "crash-test") for q in quantities]
            await eventually(
                lambda: provider.get("/admin/faults"), lambda r: r.json()["faults"] == []
            )
            [worker_pid] = run.pids("worker")
            api_pids = run.pids("api")
            os.kill(worker_pid, signal.SIGKILL)
            # The API answers throughout: order_of asserts every answer is a 200.
            ended = [await confirmed(http, order_id, deadline_s=120) for order_id in orders]
        books = [
            (await provider.get("/v1/payments", params={"order_id": o})).json() for o in orders
        ]
    try:
        stock = await factories.stock_of(engine, sku)
        payments = [await factories.payments_of(engine, o) for o in orders]
    finally:
        await engine.dispose()

    assert "worker exited on its own (signal SIGKILL); restarting it in" in run.output
    assert len(run.pids("worker")) == 2 and run.pids("worker")[0] == worker_pid
    assert run.pids("api") == api_pids  # nothing else was restarted
    assert [o["status"] for o in ended] == ["CONFIRMED"] * 3
    assert stock == 20 - sum(quantities)
    assert [len(rows) for rows in payments] == [1, 1, 1]
    assert [[c["amount"] for c in b["captures"]] for b in books] == [[1500], [3000], [4500]]


async def test_the_worker_is_handed_over_to_an_operator_and_back(running, tmp_path):
    run = running
    supervised = run.pids("worker")[-1]
    log = tmp_path / "by-hand.log"

    stopped = await run.sagactl("worker", "stop")

    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("worker stopped ("), stopped.stdout
    assert gone(supervised)
    *assignments, python, script = shlex.split(stopped.stdout.strip().splitlines()[-1])
    with log.open("ab") as out:
        by_hand = await asyncio.to_thread(
            subprocess.Popen,
            [python, script],
            cwd=ROOT,
            env={**run.env, **dict(a.split("=", 1) for a in assignments)},
            stdout=out,
            stderr=out,
        )
    try:
        # Until a worker polls, an order with no row yet has no state to show (503).
        await eventually(
            lambda: asyncio.sleep(0, log.read_text()), lambda t: "worker serving" in t, 60
        )
        order = await place_and_confirm(run.api)
        async with httpx.AsyncClient() as http:
            metrics = await scrape(http, run.ports["SAGA_WORKER_METRICS_PORT"])
    finally:
        by_hand.send_signal(signal.SIGTERM)
        await asyncio.to_thread(by_hand.wait, 60)
    assert order["status"] == "CONFIRMED"
    assert sum(samples(metrics, "saga_confirmed_total")) == 1  # the hand-run worker's
    assert run.pids("worker")[-1] == supervised  # not restarted behind the operator's back

    serving = run.output.count(SERVING)
    started = await run.sagactl("worker", "start")

    assert started.returncode == 0, started.stderr
    back = run.pids("worker")[-1]
    assert back != supervised and not gone(back)
    assert started.stdout.strip() == f"worker back under `sagactl run` as pid {back}"
    await eventually(lambda: asyncio.sleep(0, run.output.count(SERVING)), lambda n: n > serving)
    assert (await place_and_confirm(run.api))["status"] == "CONFIRMED"


async def test_every_metric_an_alert_watches_is_on_a_page_of_the_run(running):
    """deploy/prometheus/alerts.yml reads only what the processes really export."""
    pages = [
        f"http://127.0.0.1:{running.ports[f'SAGA_{name.upper()}_METRICS_PORT']}/metrics"
        for name in ("worker", "relay", "consumers", "choreography")
    ]
    pages.append(f"{running.api}/metrics")
    watched = watched_metrics()

    async def unexported() -> set[str]:
        async with httpx.AsyncClient(timeout=10) as http:
            texts = [(await http.get(page)).text for page in pages]
        exported = {
            sample.name
            for text in texts
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        return watched - exported

    # The consumers' backlog figures come once their durables are bound.
    assert await eventually(unexported, lambda missing: not missing, 60) == set()
