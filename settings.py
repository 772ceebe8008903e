"""The one settings class. Entrypoints build it once and pass it down.

Every field reads ``SAGA_<FIELD>`` from the environment. The three server
addresses also read the conventional unprefixed names (``TEMPORAL_ADDRESS``,
``DATABASE_URL``, ``NATS_URL``): when one is set, that server is used and
``make run`` starts no embedded one in its place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = "127.0.0.1"
# What the Temporal dev server lets one set of its SQLite store.
SqlitePragma = Literal["journal_mode", "synchronous"]


class Settings(BaseSettings):
    """Every field reads `SAGA_<FIELD>`; its docstring is its line in docs/configuration.md
    (stack.config_page writes that page from this class, and a test holds them equal)."""

    model_config = SettingsConfigDict(
        env_prefix="SAGA_", extra="ignore", populate_by_name=True, use_attribute_docstrings=True
    )

    data_dir: Path = Path(".data")
    """Where the embedded servers keep their data and logs, and `make run` its control
    socket; a second `make run` reuses it."""
    # A crashed app is restarted after a jittered delay doubling from initial to
    # cap, back to initial once it stayed up reset_after_s; crash_loop_exits
    # exits within crash_loop_window_s stop everything (1: any crash does).
    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    """`make run` restarts a crashed app after a jittered delay doubling from this."""
    restart_backoff_cap_s: float = Field(default=15.0, gt=0)
    """The longest delay before `make run` restarts a crashed app."""
    restart_reset_after_s: float = Field(default=30.0, ge=0)
    """An app up this long restarts after the initial delay again, if it crashes."""
    crash_loop_exits: int = Field(default=5, ge=1)
    """An app exiting this many times within the window stops `make run` (exit 1)."""
    crash_loop_window_s: float = Field(default=60.0, gt=0)
    """The window in which `SAGA_CRASH_LOOP_EXITS` exits stop `make run`."""

    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS")
    )
    """Temporal frontend `host:port`; unset: the embedded dev server."""
    temporal_namespace: str = "default"
    """The Temporal namespace the sagas run in."""
    temporal_port: int = 7233
    """The embedded dev server's frontend port."""
    temporal_ui_port: int = 8233
    """The embedded dev server's Web UI port."""
    # {} keeps SQLite's own (rollback journal, synchronous=FULL). bench/README.md
    # "Performance" has what each costs and what durability it trades.
    temporal_sqlite_pragmas: dict[SqlitePragma, str] = {  # pydantic copies it per instance
        "journal_mode": "wal",
        "synchronous": "normal",
    }
    """The embedded dev server's SQLite pragmas (JSON; the two it takes); `{}`: SQLite's
    own."""
    task_queue: str = "orders"
    """The sagas' task queue."""

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_DATABASE_URL", "DATABASE_URL")
    )
    """`postgresql://…` or `postgresql+asyncpg://…`; unset: the embedded PostgreSQL."""
    pg_port: int = 5433
    """The embedded PostgreSQL's port."""
    pg_database: str = "saga"
    """The embedded PostgreSQL's database."""
    # 0 would disable 2PC participants (PREPARE TRANSACTION).
    pg_max_prepared_transactions: int = 64
    """The embedded PostgreSQL's `max_prepared_transactions`, for 2PC branches."""
    # Beyond it PostgreSQL gives the slot up rather than fill the disk.
    pg_max_slot_wal_keep_mb: int = 1024
    """The most WAL the CDC relay's replication slot may hold back (embedded server)."""
    db_pool_size: int = 10
    """The API's database pool (workers: per bulkhead, below)."""

    nats_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_NATS_URL", "NATS_URL")
    )
    """The NATS server; unset: the embedded `nats-server -js`."""
    nats_port: int = 4222
    """The embedded NATS server's port."""
    # Each compose service is its own user, with the permissions of
    # deploy/nats/nats-server.conf.
    nats_user: str | None = None
    """The NATS user this process logs in as (with the password; unset: no login)."""
    nats_password: SecretStr | None = None
    """That NATS user's password."""

    api_host: str = LOOPBACK
    """Where the API listens."""
    api_port: int = 8000
    """The API's port."""
    environment: Literal["dev", "production"] = "dev"
    """`production`: each program refuses to start without its credentials (API keys,
    `SAGA_PAYLOAD_CODEC_KEY`, `SAGA_CARD_TOKEN_KEY`; docs/security.md); `dev`: the API is
    open unless keys are set."""
    # JSON lists, e.g. SAGA_API_ORDER_KEYS='["k1"]', one per role (api.roles).
    api_read_keys: list[SecretStr] = Field(default_factory=list)
    """API keys that may read (JSON list)."""
    api_order_keys: list[SecretStr] = Field(default_factory=list)
    """API keys that may also place and cancel orders (JSON list)."""
    api_admin_keys: list[SecretStr] = Field(
        default_factory=list,
        validation_alias=AliasChoices("SAGA_API_ADMIN_KEYS", "SAGA_API_KEYS"),
    )
    """API keys that may also add store credit and decode payloads (JSON list;
    `SAGA_API_KEYS`, of old, is read as these)."""
    api_max_body_bytes: int = 65536
    """Larger request bodies are answered 413."""
    api_price_cache_s: float = Field(default=5.0, ge=0)
    """How long the API keeps a catalogue price (api.catalog); 0 reads the catalogue for
    every order."""
    payload_codec_key: SecretStr | None = None
    """Base64 of 32 bytes: workflow payloads are AES-256-GCM encrypted (security.codec), and
    the API serves a codec endpoint for the Web UI."""
    payload_codec_key_id: str = "k1"
    """The payload key's id, written beside each payload for rotation."""
    # In dev, unset, a key kept in <data_dir>/card-token.key (security.card_key).
    card_token_key: SecretStr | None = None
    """Base64 of 32 bytes: card tokens are sealed to their order before a saga starts
    (security.sealed), so no codec key reveals them; required outside dev."""
    card_token_key_id: str = "t1"
    """The card token key's id."""
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )
    """Who may call the codec endpoint from a browser (JSON list; default: the dev UI)."""

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

    choreography_timeout_s: float = Field(default=120.0, gt=0)
    """A choreographed order not confirmed this long after it was placed is cancelled."""
    choreography_sweep_interval_s: float = Field(default=2.0, gt=0)
    """How often the orders service looks for choreographed orders past their time."""
    choreography_services: str = "all"
    """Which services' handlers `python -m choreography` runs: a comma list or `all`."""
    choreography_concurrency: int = Field(default=4, ge=1)
    """Handlers pulling from each service's durable consumer at once."""
    choreography_metrics_port: int = 9104
    """The choreography process's Prometheus endpoint; 0: off."""
    choreography_metrics_host: str = LOOPBACK
    """Where the choreography process's Prometheus endpoint listens."""

    two_phase_prepare_timeout_s: float = 10.0
    """The 2PC prepare deadline per participant (orders paid with store credit)."""
    xa_lock_timeout_ms: int = 5000
    """How long a prepare waits for rows another branch holds before voting no."""
    wallet_snapshot_every: int = Field(default=50, ge=1)
    """The wallet's event stream keeps a folded snapshot every this many events."""
    card_hold_ttl_s: int = 7 * 24 * 3600
    """How long a card authorisation hold lasts."""
    recovery_interval_s: float = 30.0
    """How often the worker sweeps for 2PC branches and holds whose coordinator is gone, and
    counts stuck sagas."""
    recovery_grace_s: float = 60.0
    """How old a branch must be before that sweep resolves it."""
    # Past a step's ten retries and the payment step's deadline: silence that long is no retry.
    stuck_saga_grace_s: float = Field(default=600.0, gt=0)
    """An open saga with no history event for this long counts as stuck
    (`saga_stuck_sagas`, the `SagaStuck` alert)."""

    # A ring after each commit wakes the relay (db.relay_ring); the poll catches
    # what no ring announced (a dropped listener connection, a relay restart).
    relay_mode: Literal["hybrid", "poll", "cdc"] = "hybrid"
    """`hybrid` (NOTIFY + poll), `poll` (the poll alone) or `cdc` (the outbox read from the
    WAL)."""
    relay_poll_interval_s: float = 1.0
    """The relay's poll of every outbox, behind NOTIFY."""
    relay_notify_batch_ms: float = Field(default=5.0, ge=0)
    """Woken by a NOTIFY, the relay waits this long for the commits right behind it, so
    one pass carries them all; 0: it drains at once."""
    relay_cdc_poll_s: float = 0.05
    """CDC mode: how often an idle replication slot is read again."""
    relay_batch_size: int = 500
    """Outbox rows claimed per pass."""
    relay_publish_timeout_s: float = 5.0
    """How long the relay waits for a JetStream ack."""
    relay_max_attempts: int = 10
    """Attempts before an event is dead-lettered (marked FAILED, copied to `deadletter.>`)."""
    relay_retention_s: int = 7 * 24 * 3600
    """How long published outbox rows are kept."""
    # An instance silent for longer than the TTL loses its partitions.
    relay_lease_ttl_s: float = 10.0
    """The TTL of the leases under which relay instances share partitions."""
    relay_metrics_port: int = 9101
    """The relay's Prometheus endpoint; 0: off."""
    relay_metrics_host: str = LOOPBACK
    """Where the relay's Prometheus endpoint listens."""
    consumers_metrics_port: int = 9103
    """The consumers process's (the order-history read model's) Prometheus endpoint;
    0: off."""
    consumers_metrics_host: str = LOOPBACK
    """Where the consumers' Prometheus endpoint listens."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The log level of every process."""
    tracing_exporter: Literal["none", "console", "otlp"] = "none"
    """OpenTelemetry traces: `none`, `console`, or `otlp` to the endpoint below."""
    tracing_otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """Where `otlp` sends traces (OTLP over HTTP)."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one object a line with `workflow_id` / `order_id` (observability.logs)."""

    @field_validator("payload_codec_key", "card_token_key")
    @classmethod
    def _a_real_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            from security.codec import parse_key

            parse_key(key.get_secret_value())  # a ValueError names what is wrong
        return key

    @model_validator(mode="after")
    def _deployment_needs_a_build_id(self) -> Settings:
        if (self.worker_deployment_name is None) != (self.worker_build_id is None):
            raise ValueError(
                "SAGA_WORKER_DEPLOYMENT_NAME and SAGA_WORKER_BUILD_ID: set both or neither"
            )
        return self

    @model_validator(mode="after")
    def _nats_login_is_whole(self) -> Settings:
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError("SAGA_NATS_USER and SAGA_NATS_PASSWORD: set both or neither")
        return self

    @model_validator(mode="after")
    def _backoff_grows(self) -> Settings:
        if self.restart_backoff_cap_s < self.restart_backoff_initial_s:
            raise ValueError(
                "SAGA_RESTART_BACKOFF_CAP_S must be at least SAGA_RESTART_BACKOFF_INITIAL_S"
            )
        return self

    @field_validator(
        "database_url",
        "orders_database_url",
        "inventory_database_url",
        "payments_database_url",
        "shipping_database_url",
    )
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        # Operators paste plain libpq URLs; the activities need the asyncpg dialect.
        if url is not None and url.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + url.split("://", 1)[1]
        return url

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"{LOOPBACK}:{self.temporal_port}"

    @property
    def database_target(self) -> str:
        return self.database_url or (
            f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.pg_port}/{self.pg_database}"
        )

    def bulkhead_database_target(self, bulkhead: str) -> str:
        """Where `bulkhead`'s pool connects: its own URL if set, else DATABASE_URL's."""
        own: str | None = getattr(self, f"{bulkhead}_database_url")
        return own or self.database_target

    @property
    def nats_target(self) -> str:
        return self.nats_url or f"nats://{LOOPBACK}:{self.nats_port}"

    @property
    def payment_provider_target(self) -> str:
        return self.payment_provider_url or f"http://{LOOPBACK}:{self.payment_provider_port}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.temporal_ui_port}"


def env_names(field: str) -> list[str]:
    """The environment variables that set a field, for error messages that name them."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"SAGA_{field.upper()}"]
