"""The workers: their bulkheads, their Worker Deployment, and the payment provider they call."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from settings.servers import LOOPBACK


class WorkerFields(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    # Bulkheads (domain.bulkheads): each task queue's worker has its own
    # activity slots and database pool, so one stalled downstream fills only
    # its own. LOCAL steps (workflows.saga) run as local activities on the
    # workflow worker, each service's within its own concurrency limit and pool.
    orders_max_concurrent_local_steps: int = Field(default=10, ge=1)
    """How many of the orders service's local steps run at once on the workflow worker."""
    inventory_max_concurrent_local_steps: int = Field(default=10, ge=1)
    """How many of inventory's local steps run at once on the workflow worker."""
    payments_max_concurrent_local_steps: int = Field(default=10, ge=1)
    """How many of payments' local steps run at once on the workflow worker."""
    shipping_max_concurrent_local_steps: int = Field(default=5, ge=1)
    """How many of shipping's local steps run at once on the workflow worker."""
    # 0: refused at once, so a refused step holds none of the worker's slots.
    local_step_max_wait_ms: int = Field(default=0, ge=0)
    """How long a local step waits for its service's turn before backing off
    (`BulkheadFull`); 0: refused at once."""
    orders_max_concurrent_activities: int = 100
    """Activity slots of the orders bulkhead's worker."""
    inventory_max_concurrent_activities: int = 50
    """Activity slots of the inventory bulkhead's worker."""
    payments_max_concurrent_activities: int = 20
    """Activity slots of the payments bulkhead's worker."""
    shipping_max_concurrent_activities: int = 50
    """Activity slots of the shipping bulkhead's worker."""
    orders_db_pool_size: int = 10
    """The orders service's database pool (plus as much overflow), per worker process."""
    inventory_db_pool_size: int = 10
    """Inventory's database pool (plus as much overflow), per worker process."""
    payments_db_pool_size: int = 10
    """Payments' database pool (plus as much overflow), per worker process."""
    shipping_db_pool_size: int = 5
    """Shipping's database pool (plus as much overflow), per worker process."""
    orders_database_url: str | None = None
    """Where the orders service's pool connects, as a login of its own (docs/security.md);
    unset: `DATABASE_URL`."""
    inventory_database_url: str | None = None
    """Where inventory's pool connects; unset: `DATABASE_URL`."""
    payments_database_url: str | None = None
    """Where payments' pool connects; unset: `DATABASE_URL`."""
    shipping_database_url: str | None = None
    """Where shipping's pool connects; unset: `DATABASE_URL`."""
    worker_deployment_name: str | None = None
    """Run the workers as one version of this Worker Deployment (with the build id; unset:
    unversioned)."""
    worker_build_id: str | None = None
    """The workers' build id in their Worker Deployment."""
    worker_bulkheads: str = "all"
    """Which bulkheads `python worker.py` runs: `orders`, `inventory`, `payments`,
    `shipping`, comma-separated, or `all`."""
    worker_metrics_port: int = 9102
    """The worker's Prometheus endpoint (the SDK's, the sagas', the steps', the breaker's
    metrics); 0: off."""
    worker_metrics_host: str = LOOPBACK
    """Where the worker's Prometheus endpoint listens."""

    payment_provider_url: str | None = None
    """The payment provider's base URL; unset: the simulator, which `make run` starts."""
    payment_provider_host: str = LOOPBACK
    """Where `python -m payment_provider` (the simulator) listens."""
    payment_provider_port: int = 8100
    """The simulator's port."""
    # Off the network /v1 is served on (the compose stack sets the port).
    payment_provider_admin_host: str = LOOPBACK
    """Where the simulator's `/admin/faults` listens, when it has a port of its own."""
    payment_provider_admin_port: int | None = None
    """The simulator's `/admin/faults` on a listener of its own (`/v1` answering it 404);
    unset: beside `/v1`, which must then listen on loopback."""
    payment_provider_journal: Path | None = None
    """Where the simulator keeps its books and stored answers across its restarts (`make
    run`: under the data dir); unset: in memory."""
    payment_connect_timeout_s: float = 2.0
    """The provider's HTTP connect timeout."""
    # Well under the step's 30 s start-to-close: a hung call ends the attempt itself.
    payment_read_timeout_s: float = 5.0
    """The provider's HTTP read timeout."""
    payment_max_connections: int = 20
    """The provider's HTTP pool, per worker process."""
    payment_retry_initial_s: float = 0.5
    """The first delay before retrying a transient provider fault (doubling, jittered)."""
    payment_retry_cap_s: float = 20.0
    """The longest delay between retries of a provider call."""
    payment_step_deadline_s: float = 120.0
    """A forward payment step gives up (and the saga compensates) once retrying would pass
    this."""
    breaker_failure_rate_threshold: float = 50.0
    """The provider's circuit breaker opens at this failure rate (percent)."""
    breaker_sliding_window_size: int = 100
    """The calls the breaker's failure rate is over."""
    breaker_minimum_calls: int = 10
    """Calls the breaker needs before it may open."""
    breaker_wait_in_open_s: float = 60.0
    """How long the open breaker refuses calls before letting some through."""
    breaker_half_open_calls: int = 10
    """Calls let through while half open, which decide whether it closes."""

    fraud_max_order_total: int = 1_000_000
    """The fraud check refuses orders above this total (minor units)."""
    fraud_max_orders_per_minute: int = 30
    """The fraud check refuses a customer's orders beyond this many in a minute."""
