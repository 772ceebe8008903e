"""`sagactl run` (what `make run` calls) as a person uses it: start, order, stop, start again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack.ports import free_port, port_in_use
from tests.factories import eventually
from tests.prometheus import samples

pytestmark = pytest.mark.asyncio
READY_LINE = "Ctrl-C stops everything."


class RunCommand:
    def __init__(self, data_dir: Path) -> None:
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
        self.output = ""
        self.proc: subprocess.Popen[str] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['SAGA_API_PORT']}"

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
        # Keep draining so the children never block on a full pipe.
        asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.read)
        return self.output

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.to_thread(self.proc.wait, 60)


async def scrape(http: httpx.AsyncClient, port: int) -> str:
    return (await http.get(f"http://127.0.0.1:{port}/metrics")).text


async def place_and_confirm(api: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        sku = (await http.get("/products")).json()[0]["sku"]
        body = {
            "customer_id": "run-test",
            "items": [{"sku": sku, "quantity": 1}],
            "payment_token": "tok_ok",
        }
        accepted = (await http.post("/orders", json=body)).json()

        async def fetch() -> dict[str, Any]:
            return dict((await http.get(f"/orders/{accepted['order_id']}")).json())

        return await eventually(fetch, lambda o: o["status"] == "CONFIRMED", deadline_s=30)


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
            lambda: scrape(http, run.ports["SAGA_CONSUMERS_METRICS_PORT"]),
            lambda text: (
                sum(samples(text, "saga_consumer_messages_total", outcome="applied")) >= 5
                and samples(text, "saga_consumer_pending_messages", consumer="order-history") == [0]
            ),
        )
        choreography = await scrape(http, run.ports["SAGA_CHOREOGRAPHY_METRICS_PORT"])
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
