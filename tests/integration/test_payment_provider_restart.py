"""The simulator's books outlive its process, as a real provider's would: `make run`
restarts it like any app, and a capture or a retried authorization after that
restart must meet the same books."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from stack.ports import free_port
from tests.factories import eventually

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


def simulator(port: int, journal: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SAGA_PAYMENT_PROVIDER_PORT": str(port),
        "SAGA_PAYMENT_PROVIDER_JOURNAL": str(journal),
    }
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "payment_provider"], cwd=ROOT, env=env, stdout=out, stderr=out
    )


async def answering(http: httpx.AsyncClient) -> None:
    async def up() -> bool:
        try:
            return (await http.get("/admin/faults")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(up, bool, deadline_s=30)


async def test_a_killed_simulator_comes_back_with_its_books_and_stored_answers(tmp_path):
    port, journal = free_port(), tmp_path / "books.jsonl"
    order_id, key = str(uuid.uuid4()), f"key-{uuid.uuid4()}"
    body = {"order_id": order_id, "amount": 1500, "currency": "EUR", "payment_token": "tok_visa"}
    first = simulator(port, journal, tmp_path / "simulator.log")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        try:
            await answering(http)
            authorized = await http.post(
                "/v1/authorizations", json=body, headers={"Idempotency-Key": key}
            )
            auth_id = authorized.json()["id"]
            before = (await http.get("/v1/payments", params={"order_id": order_id})).json()
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        second = simulator(port, journal, tmp_path / "simulator.log")
        try:
            await answering(http)
            after = (await http.get("/v1/payments", params={"order_id": order_id})).json()
            retried = await http.post(
                "/v1/authorizations", json=body, headers={"Idempotency-Key": key}
            )
            captured = await http.post(f"/v1/authorizations/{auth_id}/capture", json={})
            books = (await http.get("/v1/payments", params={"order_id": order_id})).json()
        finally:
            second.terminate()
            second.wait(10)

    assert authorized.status_code == 201
    assert after == before
    assert (retried.status_code, retried.json()["id"]) == (201, auth_id)
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert captured.status_code == 200, captured.text
    assert [(a["status"], a["amount_captured"]) for a in books["authorizations"]] == [
        ("captured", 1500)
    ]
    assert len(books["captures"]) == 1
