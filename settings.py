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
    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore", populate_by_name=True)

    # Where the embedded servers keep their data; a second `make run` reuses it.
    data_dir: Path = Path(".data")
    # `make run` restarts an app that exits on its own after a jittered delay
    # doubling from initial to cap (back to initial once it stayed up
    # reset_after_s); an app exiting crash_loop_exits times within
    # crash_loop_window_s stops everything (1: any crash does).
    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    restart_backoff_cap_s: float = Field(default=15.0, gt=0)
    restart_reset_after_s: float = Field(default=30.0, ge=0)
    crash_loop_exits: int = Field(default=5, ge=1)
    crash_loop_window_s: float = Field(default=60.0, gt=0)

    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = "default"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    # PRAGMA=VALUE for the embedded dev server's SQLite file (the two it takes);
    # {} keeps SQLite's own (rollback journal, synchronous=FULL). README
    # "Performance" has what each costs and what durability it trades.
    temporal_sqlite_pragmas: dict[SqlitePragma, str] = {  # pydantic copies it per instance
        "journal_mode": "wal",
        "synchronous": "normal",
    }
    task_queue: str = "orders"

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_DATABASE_URL", "DATABASE_URL")
    )
    pg_port: int = 5433
    pg_database: str = "saga"
    # Headroom for 2PC participants (PREPARE TRANSACTION); 0 would disable them.
    pg_max_prepared_transactions: int = 64
    # The most WAL a replication slot (the CDC relay's) may hold back; beyond it
    # PostgreSQL gives the slot up rather than fill the disk.
    pg_max_slot_wal_keep_mb: int = 1024
    db_pool_size: int = 10

    nats_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGA_NATS_URL", "NATS_URL")
    )
    nats_port: int = 4222
    # Who this process logs in to NATS as (each compose service is its own user,
    # with the permissions of deploy/nats/nats-server.conf); unset, no login.
    nats_user: str | None = None
    nats_password: SecretStr | None = None

    api_host: str = LOOPBACK
    api_port: int = 8000
    # dev: the API is open unless keys are set; production: keys are required.
    environment: Literal["dev", "production"] = "dev"
    # JSON lists, e.g. SAGA_API_ORDER_KEYS='["k1"]', one per role (api.roles):
    # read keys GET; order keys also place and cancel orders; admin keys also
    # add store credit and decode payloads. SAGA_API_KEYS (full access, of old) is admin.
    api_read_keys: list[SecretStr] = Field(default_factory=list)
    api_order_keys: list[SecretStr] = Field(default_factory=list)
    api_admin_keys: list[SecretStr] = Field(
        default_factory=list,
        validation_alias=AliasChoices("SAGA_API_ADMIN_KEYS", "SAGA_API_KEYS"),
    )
    api_max_body_bytes: int = 65536
    # How long the API keeps a catalogue price to describe an order with
    # (api.catalog); 0 reads the catalogue for every order.
    api_price_cache_s: float = Field(default=5.0, ge=0)
    # Base64 of 32 bytes: workflow payloads are then AES-256-GCM encrypted
    # (security.codec), and the API serves a codec endpoint for the Web UI.
    payload_codec_key: SecretStr | None = None
    payload_codec_key_id: str = "k1"
    # Base64 of 32 bytes: card tokens are sealed with it before a saga starts
    # (security.sealed), so no codec key reveals them. Required outside dev; in
    # dev, unset, a key kept in <data_dir>/card-token.key (security.card_key).
    card_token_key: SecretStr | None = None
    card_token_key_id: str = "t1"
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )

    # Bulkheads (domain.bulkheads): each task queue's worker has its own
    # activity slots and database pool, so one stalled downstream fills only
    # its own. `orders` is the base queue (workflows and the order service).
    # LOCAL steps (workflows.saga) all run as local activities on the workflow
    # worker: each service's within its own concurrency limit (and its own
    # pool), waiting at most local_step_max_wait_ms for a turn before backing off
    # (0: refused at once, so a refused step holds none of the worker's slots).
    orders_max_concurrent_local_steps: int = Field(default=10, ge=1)
    inventory_max_concurrent_local_steps: int = Field(default=10, ge=1)
    payments_max_concurrent_local_steps: int = Field(default=10, ge=1)
    shipping_max_concurrent_local_steps: int = Field(default=5, ge=1)
    local_step_max_wait_ms: int = Field(default=0, ge=0)
    orders_max_concurrent_activities: int = 100
    inventory_max_concurrent_activities: int = 50
    payments_max_concurrent_activities: int = 20
    shipping_max_concurrent_activities: int = 50
    orders_db_pool_size: int = 10
    inventory_db_pool_size: int = 10
    payments_db_pool_size: int = 10
    shipping_db_pool_size: int = 5
    # Each bulkhead's pool may connect as a PostgreSQL role of its own
    # (SAGA_PAYMENTS_DATABASE_URL, ...; docs/security.md); unset: DATABASE_URL.
    orders_database_url: str | None = None
    inventory_database_url: str | None = None
    payments_database_url: str | None = None
    shipping_database_url: str | None = None
    # Worker versioning: set both to run the workers as one version of a Worker
    # Deployment (README "Evolving sagas"); unset, workers are unversioned.
    worker_deployment_name: str | None = None
    worker_build_id: str | None = None
    # Which bulkheads `python worker.py` runs: a comma list or "all".
    worker_bulkheads: str = "all"
    # The worker's metrics (the SDK's, the sagas', steps', the breaker's) in
    # Prometheus text at http://<host>:<port>/metrics; 0 turns it off.
    worker_metrics_port: int = 9102
    worker_metrics_host: str = LOOPBACK

    # The external payment provider (the simulator in payment_provider/ unless
    # set: `make run` starts one on payment_provider_port when the URL is unset).
    payment_provider_url: str | None = None
    payment_provider_host: str = LOOPBACK  # where `python -m payment_provider` listens
    payment_provider_port: int = 8100
    # The simulator's fault injection (/admin/faults) on a listener of its own,
    # off the network /v1 is served on (the compose stack sets the port); unset,
    # it is served beside /v1, which must then listen on loopback.
    payment_provider_admin_host: str = LOOPBACK
    payment_provider_admin_port: int | None = None
    # Where the simulator keeps its books across restarts (`make run`: under the
    # data dir); unset, in memory only.
    payment_provider_journal: Path | None = None
    payment_connect_timeout_s: float = 2.0
    # Well under the step's 30 s start-to-close: a hung call ends the attempt itself.
    payment_read_timeout_s: float = 5.0
    payment_max_connections: int = 20
    # Retries of transient provider faults: exponential from initial to cap,
    # each delay jittered (half fixed, half random); a step gives up (and the
    # saga compensates) once retrying would pass its deadline.
    payment_retry_initial_s: float = 0.5
    payment_retry_cap_s: float = 20.0
    payment_step_deadline_s: float = 120.0
    # The circuit breaker around the provider, shared by a worker's activities.
    breaker_failure_rate_threshold: float = 50.0
    breaker_sliding_window_size: int = 100
    breaker_minimum_calls: int = 10
    breaker_wait_in_open_s: float = 60.0
    breaker_half_open_calls: int = 10

    # The fraud check before payment: orders above this total (minor units), or
    # a customer's order beyond this many in a minute, are refused.
    fraud_max_order_total: int = 1_000_000
    fraud_max_orders_per_minute: int = 30

    # Choreographed orders ("mode": "choreography"): one not confirmed within
    # this long is cancelled by the orders service's sweep, run this often.
    choreography_timeout_s: float = Field(default=120.0, gt=0)
    choreography_sweep_interval_s: float = Field(default=2.0, gt=0)
    # Which services' handlers `python -m choreography` runs: a comma list or "all".
    choreography_services: str = "all"
    # Handlers pulling from each service's durable consumer at once.
    choreography_concurrency: int = Field(default=4, ge=1)
    # Prometheus text at http://<host>:<port>/metrics (consumers.metrics); 0 turns it off.
    choreography_metrics_port: int = 9104
    choreography_metrics_host: str = LOOPBACK

    # Two-phase commit (orders paid with store credit).
    two_phase_prepare_timeout_s: float = 10.0
    # A prepare waits this long for rows another branch holds, then votes no.
    xa_lock_timeout_ms: int = 5000
    # The wallet's event stream keeps a folded snapshot every this many events.
    wallet_snapshot_every: int = Field(default=50, ge=1)
    card_hold_ttl_s: int = 7 * 24 * 3600
    # The worker's sweep for branches and holds whose coordinator is gone.
    recovery_interval_s: float = 30.0
    recovery_grace_s: float = 60.0

    # The outbox relay: NOTIFY wakes it at commit; this poll catches what a
    # notification missed (a dropped listener connection, a relay restart).
    # hybrid: NOTIFY + poll; poll: the poll alone; cdc: the outbox read from the WAL.
    relay_mode: Literal["hybrid", "poll", "cdc"] = "hybrid"
    relay_poll_interval_s: float = 1.0
    # CDC mode: how often the replication slot is read when it had nothing new.
    relay_cdc_poll_s: float = 0.05
    relay_batch_size: int = 500
    relay_publish_timeout_s: float = 5.0
    # Attempts before an event is dead-lettered (marked FAILED, copied to deadletter.>).
    relay_max_attempts: int = 10
    relay_retention_s: int = 7 * 24 * 3600
    # Scale-out: instances share partitions by consistent hashing under leases
    # with this TTL; an instance silent for longer loses its partitions.
    relay_lease_ttl_s: float = 10.0
    # Prometheus text at http://127.0.0.1:<port>/metrics; 0 turns it off.
    relay_metrics_port: int = 9101
    relay_metrics_host: str = LOOPBACK
    # The consumers process (the order-history read model): its Prometheus text
    # at http://<host>:<port>/metrics (consumers.metrics); 0 turns it off.
    consumers_metrics_port: int = 9103
    consumers_metrics_host: str = LOOPBACK
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Traces (observability.tracing): none, console, or otlp to the endpoint.
    tracing_exporter: Literal["none", "console", "otlp"] = "none"
    tracing_otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    # json: one object a line with workflow_id / order_id (observability.logs).
    log_format: Literal["text", "json"] = "text"

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
