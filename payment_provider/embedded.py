"""The simulator served by uvicorn inside the caller's event loop (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import time

import httpx
import uvicorn

from payment_provider.app import create_app
from payment_provider.state import ProviderState

LOOPBACK = "127.0.0.1"


class EmbeddedProvider:
    def __init__(self, port: int, state: ProviderState | None = None) -> None:
        self.port = port
        self.state = state or ProviderState()
        self.url = f"http://{LOOPBACK}:{port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.state),
                host=LOOPBACK,
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=5,
            )
        )
        self._serving: asyncio.Task[None] | None = None

    async def start(self, within_s: float = 20) -> None:
        self._serving = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:
                if self._serving.done():
                    self._serving.result()  # raises why it stopped
                    raise RuntimeError("payment provider stopped before answering")
                if self._server.started:
                    try:
                        if (await http.get(f"{self.url}/admin/faults")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"payment provider did not answer within {within_s} s")

    async def stop(self) -> None:
        if self._serving is not None:
            self._server.should_exit = True
            await self._serving
