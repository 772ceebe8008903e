"""The simulator's fault injection kept off the network /v1 is served on.

`python -m payment_provider` runs as the compose stack runs it: /v1 on all
addresses, SAGA_PAYMENT_PROVIDER_ADMIN_PORT set and its host left to the
default. Another container stands in as 127.0.0.2: on Linux the whole of
127/8 reaches this host, so a listener on all addresses answers there, and
one bound to 127.0.0.1 alone does not.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest

from stack.ports import LOOPBACK, free_port

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
ELSEWHERE = "127.0.0.2"


def simulator_env(**values: str) -> dict[str, str]:
    own = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    return {**own, "SAGA_LOG_LEVEL": "WARNING", **values}


async def start(env: Mapping[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "payment_provider",
        cwd=ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def split() -> AsyncIterator[tuple[int, int]]:
    """The simulator as compose runs it: (its /v1 port, its admin port)."""
    port, admin_port = free_port(), free_port()
    env = simulator_env(
        SAGA_PAYMENT_PROVIDER_HOST="0.0.0.0",
        SAGA_PAYMENT_PROVIDER_PORT=str(port),
        SAGA_PAYMENT_PROVIDER_ADMIN_PORT=str(admin_port),
    )
    process = await start(env)
    try:
        await answering(process, f"http://{LOOPBACK}:{port}/v1/payments?order_id=ready")
        yield port, admin_port
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def answering(process: asyncio.subprocess.Process, url: str, within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                _, err = await process.communicate()
                raise AssertionError(f"the simulator exited: {err.decode()}")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {within_s} s")


async def test_the_v1_listener_has_no_admin_api(split):
    port, _ = split
    async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{port}") as http:
        answers = [
            await http.get("/admin/faults"),
            await http.post("/admin/faults", json={"mode": "down", "for_seconds": 60}),
            await http.delete("/admin/faults"),
        ]
        assert [a.status_code for a in answers] == [404, 404, 404]
        assert (await http.get("/healthz")).status_code == 200  # compose's health check
        authorized = await http.post("/v1/authorizations", json=authorization())
        assert authorized.status_code == 201, authorized.text  # no fault was installed


async def test_faults_installed_on_the_admin_listener_apply_to_v1(split):
    port, admin_port = split
    async with (
        httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{port}") as v1,
        httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{admin_port}") as admin,
    ):
        added = await admin.post("/admin/faults", json={"status": 503, "count": 1})
        assert added.status_code == 201, added.text
        assert (await v1.post("/v1/authorizations", json=authorization())).status_code == 503
        assert (await admin.get("/admin/faults")).json()["faults"] == []  # used up
        assert (await admin.post("/v1/authorizations", json=authorization())).status_code == 404


async def test_the_admin_listener_is_not_reachable_from_another_address(split):
    port, admin_port = split
    async with httpx.AsyncClient(timeout=2) as http:
        assert (await http.get(f"http://{ELSEWHERE}:{port}/healthz")).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://{ELSEWHERE}:{admin_port}/admin/faults")


async def test_it_refuses_to_serve_faults_beside_v1_on_all_addresses():
    env = simulator_env(
        SAGA_PAYMENT_PROVIDER_HOST="0.0.0.0", SAGA_PAYMENT_PROVIDER_PORT=str(free_port())
    )
    process = await start(env)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:  # it served after all: leave nothing running
            process.kill()
            await process.wait()

    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    assert lines[0].startswith("python -m payment_provider: ")
    assert "SAGA_PAYMENT_PROVIDER_ADMIN_PORT" in lines[0]


def authorization() -> dict[str, object]:
    return {
        "order_id": str(uuid.uuid4()),
        "amount": 1000,
        "currency": "EUR",
        "payment_token": "tok_visa",
    }
