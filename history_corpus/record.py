"""Record the corpus on a throwaway embedded stack, or fetch one history from a server.

Recording starts its own PostgreSQL, in-memory Temporal dev server and payment
provider simulator on free ports (nothing of `make run` is touched), runs the
production workers as `worker.py` builds them, drives each case to its end and
writes every workflow's history. A fetched history is a real saga's: it is
scrubbed of tokens and ids before it is written (history_corpus.scrub).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError

from history_corpus.cases import CASES, Stage
from history_corpus.files import CORPUS, save
from history_corpus.scrub import scrubbed
from settings import Settings
from stack.throwaway import throwaway_stack
from temporal_client import connect
from wiring.activities import payment_provider_client
from wiring.root import open_bulkheads

log = logging.getLogger(__name__)


async def record(
    cases: Sequence[str] = tuple(CASES),
    corpus: Path = CORPUS,
    tag: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Record `cases`; with `tag`, each file is `<case>@<tag>.json` beside the older ones."""
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    if tag is not None and not tag.replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"tag {tag!r}: letters, digits, '-' and '.' only")
    # Fast retries: recorded attempts then take a second, not a minute.
    async with throwaway_stack(
        "record",
        task_queue=f"record-{uuid.uuid4().hex[:6]}",
        payment_retry_initial_s=0.2,
        payment_retry_cap_s=1.0,
        payment_step_deadline_s=2.0,
    ) as settings:
        return await _record_on(settings, cases, corpus, tag, overwrite)


async def fetch(client: Client, workflow_id: str, case: str, corpus: Path = CORPUS) -> Path:
    """Write one workflow's history from `client`'s server as `case`, scrubbed."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    clean = await scrubbed(history, client.data_converter.payload_codec)
    return save(clean, case, corpus)


async def _record_on(
    settings: Settings, cases: Sequence[str], corpus: Path, tag: str | None, overwrite: bool
) -> list[Path]:
    client = await connect(settings.temporal())
    written: list[Path] = []
    engines: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        provider = payment_provider_client(settings.provider())
        stack.push_async_callback(provider.aclose)

        async def start_workers(stand_ins: dict[str, Callable[..., Any]]) -> str:
            own = settings.model_copy(update={"task_queue": f"record-{uuid.uuid4().hex[:6]}"})
            workers, own_engines = open_bulkheads(client, own, provider, stand_ins=stand_ins)
            for engine in own_engines.values():
                stack.push_async_callback(engine.dispose)
                engines.append(engine)
            for one in workers:
                await stack.enter_async_context(one)
            return own.task_queue

        base = await start_workers({})
        admin = await stack.enter_async_context(
            httpx.AsyncClient(base_url=settings.payment_provider_target, timeout=10)
        )
        stage = Stage(client, engines[0], admin, base, start_workers)
        for name in cases:
            produced = await CASES[name](stage)
            for corpus_name, handle in produced:
                with contextlib.suppress(WorkflowFailureError):
                    await asyncio.wait_for(handle.result(), 60)
                name = f"{corpus_name}@{tag}" if tag else corpus_name
                path = save(await handle.fetch_history(), name, corpus, overwrite)
                log.info("recorded %s (%s)", path, handle.id)
                written.append(path)
            await admin.delete("/admin/faults")
    return written
