"""Session fixtures: real servers on free ports, so tests never clash with `make run`.

PostgreSQL (embedded, migrated once), the Temporal dev server (in memory) and
NATS start once per session. Each test isolates itself by unique ids: its own
products, customers and orders, and where it swaps an activity, its own task
queue and worker.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities import all_activities
from api.app import create_app
from db.engine import SessionFactory, create_engine, create_session_factory
from db.migrate import upgrade
from domain.orders import OrderLine, PlaceOrder, workflow_id_for
from domain.saga import SagaState
from settings import Settings
from stack.nats import NatsServer
from stack.ports import free_port
from stack.postgres import EmbeddedPostgres
from stack.temporal import SEARCH_ATTRIBUTES, TemporalDevServer
from temporal_client import connect
from tests import factories
from worker import build_worker

_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal SDK's native runtime sometimes aborts the interpreter at exit
    # after every test has run (see LIMITS.md); report pytest's verdict, not that.
    if os.environ.get("SAGA_TEST_HARD_EXIT", "1") == "1":
        import logging
        import sys

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
async def postgres(stack_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        data_dir=stack_dir / "postgres",
        port=free_port(),
        database="saga_test",
        max_prepared_transactions=64,
        log_dir=stack_dir / "logs",
    )
    await server.start()
    await asyncio.to_thread(upgrade, server.url)
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def temporal(stack_dir: Path) -> AsyncIterator[TemporalDevServer]:
    server = TemporalDevServer(
        port=free_port(),
        ui_port=free_port(),
        db_file=None,
        log_dir=stack_dir / "logs",
        search_attributes=SEARCH_ATTRIBUTES,
        headless=True,
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def nats(stack_dir: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(port=free_port(), store_dir=stack_dir / "nats", log_dir=stack_dir / "logs")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def js(nats: NatsServer) -> AsyncIterator[Any]:
    """A JetStream context on the session's NATS, with the project's stream in place."""
    from nats import connect as nats_connect

    from consumers.stream import ensure_stream

    client = await nats_connect(nats.url)
    context = client.jetstream()
    await ensure_stream(context)
    yield context
    await client.close()


@pytest.fixture(scope="session")
def settings(postgres: EmbeddedPostgres, temporal: TemporalDevServer) -> Settings:
    return Settings(
        temporal_address=temporal.address,
        database_url=postgres.url,
        task_queue=f"orders-test-{uuid.uuid4().hex[:8]}",
        data_dir=postgres.data_dir.parent,
    )


@pytest.fixture(scope="session")
async def client(settings: Settings) -> Client:
    return await connect(settings)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_target, pool_size=20)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


@pytest.fixture(scope="session")
async def worker(client: Client, settings: Settings, engine: AsyncEngine) -> AsyncIterator[Worker]:
    """The production worker: every real activity on the session's task queue."""
    worker = build_worker(client, settings.task_queue, all_activities(engine, settings).values())
    async with worker:
        yield worker


@pytest.fixture
async def custom_worker(
    client: Client, settings: Settings, engine: AsyncEngine
) -> AsyncIterator[Callable[[dict[str, Callable[..., Any]]], Any]]:
    """Start a worker on a fresh task queue with some activities swapped for stand-ins.

    Stand-ins are registered under the real activity names, so the saga is
    unchanged; everything not swapped is the real activity.
    """
    workers: list[Worker] = []

    async def start(stand_ins: dict[str, Callable[..., Any]]) -> str:
        queue = f"custom-{uuid.uuid4().hex[:8]}"
        worker = build_worker(
            client, queue, {**all_activities(engine, settings), **stand_ins}.values()
        )
        await worker.__aenter__()
        workers.append(worker)
        return queue

    yield start
    for worker in workers:
        await worker.__aexit__(None, None, None)


@pytest.fixture
async def api(settings: Settings, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
def product(engine: AsyncEngine) -> Callable[..., Any]:
    """Create a product of this test's own, so stock counts are the test's alone."""

    async def make(stock: int = 100, price: int = 1000) -> str:
        return await factories.insert_product(engine, stock=stock, price=price)

    return make


async def start_saga(
    client: Client,
    task_queue: str,
    items: Sequence[tuple[str, int]],
    payment_token: str = "tok_visa",
    customer_id: str | None = None,
    order_id: str | None = None,
    **options: Any,
) -> WorkflowHandle[Any, Any]:
    """Start an OrderSaga; `options` are further PlaceOrder fields (store_credit, ...)."""
    order = PlaceOrder(
        order_id=order_id or str(uuid.uuid4()),
        customer_id=customer_id or factories.customer(),
        items=[OrderLine(sku=sku, quantity=qty) for sku, qty in items],
        payment_token=payment_token,
        **options,
    )
    return await client.start_workflow(
        "OrderSaga",
        order,
        id=workflow_id_for(order.order_id),
        task_queue=task_queue,
        result_type=SagaState,
    )


@pytest.fixture
def saga(client: Client, settings: Settings, worker: Worker) -> Callable[..., Any]:
    """Start an order saga on the production worker (or on `task_queue` if given)."""

    async def start(
        items: Sequence[tuple[str, int]],
        payment_token: str = "tok_visa",
        task_queue: str | None = None,
        **options: Any,
    ) -> WorkflowHandle[Any, Any]:
        queue = task_queue or settings.task_queue
        return await start_saga(client, queue, items, payment_token, **options)

    return start
