"""Session fixtures: real servers on free ports, so tests never clash with `make run`.

PostgreSQL (embedded, migrated once), the Temporal dev server (in memory) and
NATS start once per session. Each test isolates itself by unique ids: its own
products, customers and orders, and where it swaps an activity, its own task
queue and worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.api import DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.provider_client import PaymentProviderClient
from api.app import create_app
from consumers.consumer import RunnerOptions
from consumers.order_history import order_history_consumer
from consumers.runner import ConsumerRunner
from db.engine import SessionFactory, create_engine, create_session_factory
from db.migrate import upgrade
from domain.order_saga import SagaState
from domain.orders import OrderLine, PlaceOrder, workflow_id_for
from domain.saga import WORKFLOW_TASK_TIMEOUT
from messaging.wire import STREAM
from payment_provider.embedded import EmbeddedProvider
from relay.service import run_relay
from relay.stats import RelayStats
from settings import Settings
from stack.nats import NatsServer
from stack.ports import free_port
from stack.postgres import EmbeddedPostgres
from stack.temporal import SEARCH_ATTRIBUTES, TemporalDevServer
from temporal_client import connect
from tests import factories
from wiring.activities import all_activities, card_participant, payment_provider_client
from wiring.root import build_workers, open_bulkheads, running
from wiring.served import RELAYED

_exit_status = 0
_own_basetemp: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Every pytest that starts makes the shared root (/tmp/pytest-of-<user>)
    # private again: a second session on the machine locked the embedded
    # PostgreSQL's system user out of the first one's data dir mid-run (its next
    # checkpoint PANICs). So a session keeps its tmp dirs in a root of its own.
    global _own_basetemp
    if config.option.basetemp is None:
        _own_basetemp = Path(tempfile.mkdtemp(prefix="saga-pytest-"))
        config.option.basetemp = str(_own_basetemp)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _own_basetemp is not None and _exit_status == 0:  # a failed run's dirs are evidence
        shutil.rmtree(_own_basetemp, ignore_errors=True)
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

    from messaging.stream import ensure_stream

    client = await nats_connect(nats.url)
    context = client.jetstream()
    await ensure_stream(context)
    yield context
    await client.close()


@pytest.fixture(scope="session")
async def payment_provider() -> AsyncIterator[EmbeddedProvider]:
    """The payment provider simulator, a real HTTP server on a free port."""
    server = EmbeddedProvider(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider_admin(payment_provider: EmbeddedProvider) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's HTTP API; faults a test installs are cleared when it ends."""
    async with httpx.AsyncClient(base_url=payment_provider.url, timeout=10) as http:
        yield http
        await http.delete("/admin/faults")


@pytest.fixture(scope="session")
def settings(
    postgres: EmbeddedPostgres, temporal: TemporalDevServer, payment_provider: EmbeddedProvider
) -> Settings:
    return Settings(
        temporal_address=temporal.address,
        database_url=postgres.url,
        payment_provider_url=payment_provider.url,
        task_queue=f"orders-test-{uuid.uuid4().hex[:8]}",
        data_dir=postgres.data_dir.parent,
        # Tests that scrape a consumer process give it a free port of its own.
        consumers_metrics_port=0,
        choreography_metrics_port=0,
    )


@pytest.fixture(scope="session")
async def client(settings: Settings) -> Client:
    return await connect(settings.temporal())


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_target, pool_size=20)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


@pytest.fixture(scope="session")
async def provider_client(settings: Settings) -> AsyncIterator[PaymentProviderClient]:
    client = payment_provider_client(settings.provider())
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def card(engine: AsyncEngine, settings: Settings, provider_client: PaymentProviderClient) -> Any:
    """The card's TCC participant on the session's provider, called directly."""
    return card_participant(engine, settings, provider_client)


@pytest.fixture(scope="session")
async def worker(
    client: Client, settings: Settings, engine: AsyncEngine, provider_client: PaymentProviderClient
) -> AsyncIterator[list[Worker]]:
    """The production workers: every bulkhead's real activities, on the session's queues."""
    activities = all_activities(engine, settings, provider_client)
    workers = build_workers(client, settings.task_queue, activities, settings)
    async with running(workers):
        yield workers


@pytest.fixture
async def custom_worker(client: Client, settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """Start workers on a fresh base task queue, some activities swapped for stand-ins.

    Stand-ins are registered under the real activity names, so the saga is
    unchanged; everything not swapped is the real activity. The workers are
    built as `worker.py` builds them: one per bulkhead, each with its own
    database pool, and their own provider client and circuit breaker;
    `overrides` are settings of theirs alone (a faster breaker, fewer slots).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            stand_ins: dict[str, Callable[..., Any]] | None = None, **overrides: Any
        ) -> str:
            queue = f"custom-{uuid.uuid4().hex[:8]}"
            own = settings.model_copy(update={"task_queue": queue, **overrides})
            provider = payment_provider_client(own.provider())
            stack.push_async_callback(provider.aclose)
            workers, engines = open_bulkheads(client, own, provider, stand_ins=stand_ins)
            for engine in engines.values():
                stack.push_async_callback(engine.dispose)
            for one in workers:
                await stack.enter_async_context(one)
            return queue

        yield start


@pytest.fixture
async def api(settings: Settings, worker: list[Worker]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
def relay_settings(settings: Settings, nats: NatsServer) -> Settings:
    """Settings for a relay on the session's servers, quick to poll and to give up."""
    return settings.model_copy(
        update={
            "nats_url": nats.url,
            "relay_poll_interval_s": 0.2,
            "relay_max_attempts": 3,
            "relay_lease_ttl_s": 2.0,
            "relay_metrics_port": 0,
        }
    )


@pytest.fixture
async def relay(relay_settings: Settings) -> AsyncIterator[RelayStats]:
    """The relay, in this process, for the test's duration."""
    stop, stats = asyncio.Event(), RelayStats()
    task = asyncio.create_task(run_relay(relay_settings.relay(), stop, tables=RELAYED, stats=stats))
    yield stats
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def order_history(js: Any, engine: AsyncEngine) -> AsyncIterator[None]:
    """The real order-history projection on all events from now on (earlier tests' are not ours)."""
    consumer = order_history_consumer(
        f"test-order-history-{uuid.uuid4().hex[:8]}", deliver_policy=DeliverPolicy.NEW
    )
    runner = ConsumerRunner(js, engine, consumer, RunnerOptions(fetch_timeout_s=0.5))
    await runner.bind()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    await js.delete_consumer(STREAM, consumer.name)


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
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        result_type=SagaState,
    )


@pytest.fixture
def saga(client: Client, settings: Settings, worker: list[Worker]) -> Callable[..., Any]:
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
