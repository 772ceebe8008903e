"""Each process connects as its own PostgreSQL login, and can do its work and no other.

This module's cluster is set up as the compose stack sets up its postgres
container: deploy/postgres/init.sh makes the logins as members of migration
0015's group roles, and the migrations run as the database's owner, no
superuser. Then every bulkhead, the relay, the consumers and the API connect
as their own login, as they do in docker-compose.yml.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from nats.js.api import DeliverPolicy
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.stock_branch import StockParticipant
from choreography import service as choreography
from consumers.consumer import RunnerOptions
from consumers.order_history import order_history_consumer
from consumers.runner import ConsumerRunner
from db.engine import create_engine
from db.migrate import upgrade
from db.tables import decisions, order_history, reservations, service_tables
from domain.bulkheads import Bulkhead
from domain.two_phase import BranchCall, Decision, Vote, branch_gid
from messaging.wire import STREAM
from recovery.sweep import sweep
from relay.service import run_relay
from relay.stats import RelayStats
from settings import LOOPBACK, Settings
from stack import binaries
from stack.nats import NatsServer
from stack.ports import free_port
from stack.postgres import EmbeddedPostgres
from tests import factories
from tests.asgi import serve
from wiring.activities import card_participant, payment_provider_client, reactions
from wiring.root import open_bulkheads, running
from wiring.served import RELAYED
from wiring.services import SERVICES as CHOREOGRAPHED

pytestmark = pytest.mark.asyncio

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "init.sh"
APPS = ("ORDERS", "INVENTORY", "PAYMENTS", "SHIPPING", "RELAY", "CONSUMERS", "API")
# The variables deploy/postgres/init.sh reads its passwords from.
PASSWORDS = ("MIGRATOR", *APPS, "TEMPORAL")
LOGINS = ("saga_migrator", *(f"app_{name.lower()}" for name in APPS))


@dataclass
class RolesCluster:
    server: EmbeddedPostgres
    engines: dict[str, AsyncEngine] = field(default_factory=dict)

    def url(self, login: str) -> str:
        # Trust authentication: what this checks is what each role may do.
        return f"postgresql+asyncpg://{login}@{LOOPBACK}:{self.server.port}/saga"

    def dsn(self, login: str) -> str:
        return f"postgresql://{login}@{LOOPBACK}:{self.server.port}/saga"


async def run_init_script(server: EmbeddedPostgres) -> None:
    """As the postgres image runs it: the bootstrap superuser, passwords in the environment."""
    env = {
        **os.environ,
        "PATH": f"{binaries.postgres_bin_dir()}:{os.environ['PATH']}",
        "PGHOST": LOOPBACK,
        "PGPORT": str(server.port),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": server.database,
        **{f"PG_{name}_PASSWORD": secrets.token_hex(16) for name in PASSWORDS},
    }
    script = await asyncio.create_subprocess_exec(
        "bash",
        str(INIT_SCRIPT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await script.communicate()
    assert script.returncode == 0, (out + err).decode()


@pytest.fixture(scope="module")
async def cluster(stack_dir: Path) -> AsyncIterator[RolesCluster]:
    server = EmbeddedPostgres(
        data_dir=stack_dir / "roles-postgres",
        port=free_port(),
        database="saga",
        max_prepared_transactions=16,
        log_dir=stack_dir / "logs",
    )
    await server.start()
    await run_init_script(server)
    roles = RolesCluster(server)
    await asyncio.to_thread(upgrade, roles.url("saga_migrator"))
    roles.engines = {login: create_engine(roles.url(login), pool_size=4) for login in LOGINS}
    yield roles
    for engine in roles.engines.values():
        await engine.dispose()
    await server.stop()


@pytest.fixture
def own_settings(settings: Settings, nats: NatsServer, cluster: RolesCluster) -> Settings:
    """As compose runs them: each bulkhead on its login; the rest on the API's."""
    return settings.model_copy(
        update={
            "task_queue": f"roles-{uuid.uuid4().hex[:8]}",
            "database_url": cluster.url("app_api"),
            **{f"{b.value}_database_url": cluster.url(f"app_{b.value}") for b in Bulkhead},
            "nats_url": nats.url,
            "relay_poll_interval_s": 0.2,
            "relay_lease_ttl_s": 2.0,
            "relay_metrics_port": 0,
        }
    )


async def test_the_migrations_ran_as_the_databases_owner_who_is_no_superuser(cluster):
    async with cluster.engines["saga_migrator"].connect() as conn:
        superuser = await conn.scalar(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
        owners = set(
            await conn.scalars(
                text(
                    "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN"
                    " ('orders', 'inventory', 'payments', 'shipping', 'coordinator', 'relay',"
                    " 'readmodels')"
                )
            )
        )
    assert superuser is False
    assert owners == {"saga_migrator"}


OUTBOX_ROW = (
    "(event_id, aggregate_type, aggregate_id, event_type, payload)"
    " VALUES (gen_random_uuid(), 'order', 'forged', 'OrderCancelled', '{}')"
)
REFUSED = [
    ("app_inventory", "SELECT * FROM payments.payments"),
    ("app_inventory", "SELECT balance FROM payments.wallets"),
    ("app_inventory", "UPDATE payments.wallets SET balance = balance + 100"),
    ("app_inventory", f"INSERT INTO payments.outbox {OUTBOX_ROW}"),
    ("app_inventory", "SELECT * FROM orders.orders"),
    ("app_inventory", "UPDATE orders.orders SET status = 'CANCELLED'"),
    ("app_inventory", f"INSERT INTO orders.outbox {OUTBOX_ROW}"),
    ("app_inventory", "DELETE FROM inventory.products"),
    ("app_inventory", "DROP TABLE inventory.reservations"),
    ("app_payments", "UPDATE inventory.products SET stock = stock + 1"),
    ("app_payments", "SELECT * FROM orders.order_lines"),
    ("app_shipping", "SELECT * FROM payments.card_holds"),
    ("app_orders", "UPDATE inventory.products SET stock = stock + 1"),
    ("app_orders", "SELECT stock FROM inventory.products"),
    ("app_orders", "UPDATE payments.wallets SET balance = balance + 100"),
    ("app_relay", "SELECT * FROM orders.orders"),
    ("app_relay", f"INSERT INTO orders.outbox {OUTBOX_ROW}"),
    ("app_consumers", "SELECT * FROM payments.payments"),
    ("app_api", "SELECT * FROM payments.card_holds"),
    ("app_api", "SELECT * FROM payments.payments"),
    ("app_api", "UPDATE inventory.products SET stock = stock + 1"),
    ("app_api", "UPDATE coordinator.decisions SET decision = 'COMMIT'"),
]


@pytest.mark.parametrize(
    ("login", "statement"), REFUSED, ids=[f"{r[0]}: {r[1][:40]}" for r in REFUSED]
)
async def test_a_login_may_not_touch_another_services_rows(cluster, login, statement):
    conn = await asyncpg.connect(cluster.dsn(login))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def place(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    accepted = await api.post("/orders", json=body)
    assert accepted.status_code == 202, accepted.text

    async def fetch() -> dict[str, Any]:
        # Every read answers, the running saga's too: its progress is read from
        # each service's step keys, as the API's login.
        response = await api.get(f"/orders/{accepted.json()['order_id']}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    return await factories.eventually(fetch, lambda o: o["status"] != "PENDING", deadline_s=60)


@pytest.fixture
async def projected(js: Any, cluster: RolesCluster) -> AsyncIterator[None]:
    """The order-history consumer, as the consumers' login, on events from now on."""
    consumer = order_history_consumer(
        f"test-roles-history-{uuid.uuid4().hex[:8]}", deliver_policy=DeliverPolicy.NEW
    )
    runner = ConsumerRunner(
        js, cluster.engines["app_consumers"], consumer, RunnerOptions(fetch_timeout_s=0.5)
    )
    await runner.bind()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    await js.delete_consumer(STREAM, consumer.name)


@pytest.fixture
async def relay(cluster: RolesCluster, own_settings: Settings) -> AsyncIterator[None]:
    """The relay, as the relay's login."""
    relay_settings = own_settings.model_copy(update={"database_url": cluster.url("app_relay")})
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_relay(relay_settings.relay(), stop, tables=RELAYED, stats=RelayStats())
    )
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


# The API app in-process, its lifespan run, on settings that log in as app_api.
api_as_its_login = contextlib.asynccontextmanager(serve)


async def test_orders_confirm_and_publish_with_each_process_as_its_own_login(
    client: Client, cluster: RolesCluster, own_settings: Settings, relay: None, projected: None
):
    provider = payment_provider_client(own_settings.provider())
    workers, engines = open_bulkheads(client, own_settings, provider)
    try:
        assert {b: e.url.username for b, e in engines.items()} == {
            b: f"app_{b.value}" for b in Bulkhead
        }
        sku = await factories.insert_product(cluster.engines["app_inventory"], stock=10, price=1500)
        async with running(workers), api_as_its_login(own_settings) as api:
            by_card = await place(api, order_body(sku, 2))
            by_credit = await two_phase_order(api, sku)
    finally:
        await provider.aclose()
        for engine in engines.values():
            await engine.dispose()

    assert (by_card["status"], by_credit["status"]) == ("CONFIRMED", "CONFIRMED")
    assert by_credit["two_phase"]["decision"] == "COMMIT"
    owner = cluster.engines["saga_migrator"]
    for order_id in (by_card["order_id"], by_credit["order_id"]):
        await factories.eventually(
            functools.partial(pending_events, owner, order_id), lambda n: n == 0
        )
        seen = await factories.eventually(
            functools.partial(projected_events, owner, order_id),
            lambda events: "OrderConfirmed" in events,
        )
        assert {"OrderCreated", "PaymentCaptured", "ShipmentCreated"} <= seen


def order_body(sku: str, quantity: int, **more: Any) -> dict[str, Any]:
    return {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": quantity}],
        "payment_token": "tok_visa",
        **more,
    }


async def two_phase_order(api: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    """Paid partly with store credit the API tops up: stock, wallet and card by 2PC."""
    body = order_body(sku, 1, store_credit=500)
    credited = await api.post(f"/wallets/{body['customer_id']}/credits", json={"amount": 500})
    assert credited.status_code == 201, credited.text
    return await place(api, body)


async def pending_events(engine: AsyncEngine, order_id: str) -> int:
    """The order's events the relay has not published yet, in every service's outbox."""
    pending = 0
    async with engine.connect() as conn:
        for tables in service_tables.values():
            outbox = tables.outbox
            pending += len(
                (
                    await conn.execute(
                        select(outbox.c.event_id).where(
                            outbox.c.payload["order_id"].astext == order_id,
                            outbox.c.status != "PUBLISHED",
                        )
                    )
                ).all()
            )
    return pending


async def projected_events(engine: AsyncEngine, order_id: str) -> set[str]:
    async with engine.connect() as conn:
        return set(
            await conn.scalars(
                select(order_history.c.event_type).where(order_history.c.order_id == order_id)
            )
        )


async def test_a_choreographed_order_confirms_with_each_services_handlers_as_its_login(
    js: Any, cluster: RolesCluster, own_settings: Settings, relay: None
):
    """As compose runs them: one handlers process per service, on that service's login."""
    prefix = f"test-roles-choreo-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    provider = payment_provider_client(own_settings.provider())
    logins = {
        service: own_settings.model_copy(update={"database_url": cluster.url(f"app_{service}")})
        for service in CHOREOGRAPHED
    }
    handlers = [
        asyncio.create_task(
            choreography.run(
                logins[service].choreography(),
                reactions(logins[service], provider),
                stop,
                [service],
                prefix=prefix,
                deliver_policy=DeliverPolicy.NEW,
            )
        )
        for service in CHOREOGRAPHED
    ]
    try:
        sku = await factories.insert_product(cluster.engines["app_inventory"], stock=5, price=700)
        async with api_as_its_login(own_settings) as api:
            await bound(js, prefix)
            order = await place(api, order_body(sku, 1, mode="choreography"))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*handlers), 30)
        await provider.aclose()
        for service in CHOREOGRAPHED:
            with contextlib.suppress(Exception):
                await js.delete_consumer(STREAM, f"{prefix}-{service}")

    assert order["status"] == "CONFIRMED", order
    assert await factories.stock_of(cluster.engines["saga_migrator"], sku) == 4


async def bound(js: Any, prefix: str) -> None:
    """Wait until every service's durable exists: an event before it would be missed."""

    async def names() -> set[str]:
        return {info.name for info in await js.consumers_info(STREAM)}

    wanted = {f"{prefix}-{service}" for service in CHOREOGRAPHED}
    await factories.eventually(names, lambda found: wanted <= found)


@pytest.mark.parametrize("decision", [Decision.COMMIT, Decision.ABORT])
async def test_recovery_as_the_orders_login_finishes_a_branch_inventory_prepared(
    client: Client, cluster: RolesCluster, own_settings: Settings, decision: Decision
):
    """PostgreSQL lets only a prepared transaction's owner finish it: the branch
    is prepared as its branch role, which the orders login may become."""
    inventory, orders = cluster.engines["app_inventory"], cluster.engines["app_orders"]
    sku = await factories.insert_product(inventory, stock=5, price=100)
    tx_id = f"roles-{uuid.uuid4().hex[:10]}"
    call = BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "stock"),
        payload={"order_id": tx_id, "lines": {sku: 2}},
    )
    assert (await StockParticipant(inventory).prepare_stock(call)).vote is Vote.YES
    if decision is Decision.COMMIT:
        async with orders.begin() as conn:
            await conn.execute(
                decisions.insert().values(
                    tx_id=tx_id, decision="COMMIT", participants=["stock"], votes={"stock": "YES"}
                )
            )
    provider = payment_provider_client(own_settings.provider())
    try:
        card = card_participant(orders, own_settings, provider)
        report = await sweep(orders, client, timedelta(0), card)
    finally:
        await provider.aclose()

    done = report.committed if decision is Decision.COMMIT else report.aborted
    assert tx_id in done, report
    owner = cluster.engines["saga_migrator"]
    async with owner.connect() as conn:
        prepared = await conn.scalar(
            text("SELECT count(*) FROM pg_prepared_xacts WHERE gid = :gid"), {"gid": call.gid}
        )
        reserved = (
            await conn.execute(
                select(reservations.c.quantity).where(reservations.c.order_id == tx_id)
            )
        ).all()
    assert prepared == 0
    assert reserved == ([(2,)] if decision is Decision.COMMIT else [])
    assert await factories.stock_of(owner, sku) == (3 if decision is Decision.COMMIT else 5)
