"""The one settings class. Entry points and the wiring build it once and hand
each component its slice (settings_slices); no component imports this package.

Every field reads ``SAGA_<FIELD>`` from the environment. The three server
addresses also read the conventional unprefixed names (``TEMPORAL_ADDRESS``,
``DATABASE_URL``, ``NATS_URL``): when one is set, that server is used and
``make run`` starts no embedded one in its place. The fields are declared in
groups (servers, api, workers, flows), one module each; the slices are cut here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from settings.api import ApiFields
from settings.flows import FlowFields
from settings.servers import LOOPBACK, ServerFields, SqlitePragma
from settings.workers import WorkerFields
from settings_slices import (
    ApiAccess,
    ApiFlows,
    BreakerConfig,
    BulkheadConfig,
    CardKeys,
    ChoreographySettings,
    ConsumersSettings,
    Deployment,
    FraudConfig,
    LogConfig,
    MetricsEndpoint,
    NatsConfig,
    ProviderConfig,
    RecoveryConfig,
    RelaySettings,
    TemporalConfig,
    TracingConfig,
    TwoPhaseConfig,
    WorkerSettings,
)

__all__ = ["LOOPBACK", "PROJECT_ROOT", "Settings", "SqlitePragma", "env_names"]

# Relative data dirs are the project's, as `make run` resolves them for its children.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(FlowFields, WorkerFields, ApiFields, ServerFields, BaseSettings):
    """Every field reads `SAGA_<FIELD>`; its docstring is its line in docs/configuration.md
    (stack.config_page writes that page from this class, and a test holds them equal)."""

    model_config = SettingsConfigDict(
        env_prefix="SAGA_", extra="ignore", populate_by_name=True, use_attribute_docstrings=True
    )

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

    @field_validator("nats_stream_replicas")
    @classmethod
    def _a_majority_can_be_had(cls, replicas: int) -> int:
        if replicas % 2 == 0:
            raise ValueError("must be odd (1, 3 or 5): a JetStream cluster needs a majority up")
        return replicas

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

    # -- addresses --------------------------------------------------------------

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

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir.is_absolute() else PROJECT_ROOT / self.data_dir

    # -- slices: what each component is handed ---------------------------------

    def temporal(self) -> TemporalConfig:
        return TemporalConfig(
            self.temporal_target,
            self.temporal_namespace,
            self.payload_codec_key,
            self.payload_codec_key_id,
        )

    def nats(self) -> NatsConfig:
        return NatsConfig(self.nats_target, self.nats_user, self.nats_password)

    def card_keys(self) -> CardKeys:
        return CardKeys(
            self.card_token_key,
            self.card_token_key_id,
            self.payload_codec_key,
            self.payload_codec_key_id,
            self.environment,
            self.resolved_data_dir,
        )

    def logs(self) -> LogConfig:
        return LogConfig(self.log_level, self.log_format)

    def tracing(self) -> TracingConfig:
        return TracingConfig(self.tracing_exporter, self.tracing_otlp_endpoint)

    def metrics(self, process: str) -> MetricsEndpoint:
        """`relay`, `worker`, `consumers` or `choreography`'s Prometheus endpoint."""
        host: str = getattr(self, f"{process}_metrics_host")
        port: int = getattr(self, f"{process}_metrics_port")
        return MetricsEndpoint(host, port)

    def relay(self) -> RelaySettings:
        return RelaySettings(
            database_url=self.database_target,
            nats=self.nats(),
            metrics=self.metrics("relay"),
            mode=self.relay_mode,
            poll_interval_s=self.relay_poll_interval_s,
            notify_batch_ms=self.relay_notify_batch_ms,
            cdc_poll_s=self.relay_cdc_poll_s,
            batch_size=self.relay_batch_size,
            publish_timeout_s=self.relay_publish_timeout_s,
            max_attempts=self.relay_max_attempts,
            retention_s=self.relay_retention_s,
            lease_ttl_s=self.relay_lease_ttl_s,
            stream_replicas=self.nats_stream_replicas,
        )

    def consumers(self) -> ConsumersSettings:
        return ConsumersSettings(self.database_target, self.nats(), self.metrics("consumers"))

    def breaker(self) -> BreakerConfig:
        return BreakerConfig(
            self.breaker_failure_rate_threshold,
            self.breaker_sliding_window_size,
            self.breaker_minimum_calls,
            self.breaker_wait_in_open_s,
            self.breaker_half_open_calls,
        )

    def provider(self) -> ProviderConfig:
        return ProviderConfig(
            url=self.payment_provider_target,
            connect_timeout_s=self.payment_connect_timeout_s,
            read_timeout_s=self.payment_read_timeout_s,
            max_connections=self.payment_max_connections,
            retry_initial_s=self.payment_retry_initial_s,
            retry_cap_s=self.payment_retry_cap_s,
            step_deadline_s=self.payment_step_deadline_s,
            breaker=self.breaker(),
        )

    @classmethod
    def bulkhead_names(cls) -> list[str]:
        """The bulkheads settings are given for: each has a database pool of its own."""
        return [
            f.removesuffix("_db_pool_size") for f in cls.model_fields if f.endswith("_db_pool_size")
        ]

    def bulkhead(self, name: str) -> BulkheadConfig:
        return BulkheadConfig(
            database_url=self.bulkhead_database_target(name),
            pool_size=getattr(self, f"{name}_db_pool_size"),
            max_activities=getattr(self, f"{name}_max_concurrent_activities"),
            max_local_steps=getattr(self, f"{name}_max_concurrent_local_steps"),
        )

    def worker(self) -> WorkerSettings:
        deployment = None
        if self.worker_deployment_name is not None and self.worker_build_id is not None:
            deployment = Deployment(self.worker_deployment_name, self.worker_build_id)
        return WorkerSettings(
            task_queue=self.task_queue,
            bulkheads={name: self.bulkhead(name) for name in self.bulkhead_names()},
            local_step_max_wait_s=self.local_step_max_wait_ms / 1000,
            deployment=deployment,
            metrics=self.metrics("worker"),
        )

    def two_phase(self) -> TwoPhaseConfig:
        return TwoPhaseConfig(
            self.two_phase_prepare_timeout_s,
            self.xa_lock_timeout_ms,
            self.wallet_snapshot_every,
            self.card_hold_ttl_s,
        )

    def fraud(self) -> FraudConfig:
        return FraudConfig(self.fraud_max_order_total, self.fraud_max_orders_per_minute)

    def recovery(self) -> RecoveryConfig:
        return RecoveryConfig(
            self.recovery_interval_s, self.recovery_grace_s, self.stuck_saga_grace_s
        )

    def choreography(self) -> ChoreographySettings:
        return ChoreographySettings(
            self.database_target,
            self.nats(),
            self.choreography_timeout_s,
            self.choreography_sweep_interval_s,
            self.choreography_concurrency,
            self.metrics("choreography"),
        )

    def api_access(self) -> ApiAccess:
        return ApiAccess(
            tuple(self.api_read_keys),
            tuple(self.api_order_keys),
            tuple(self.api_admin_keys),
            self.api_max_body_bytes,
        )

    def api_flows(self) -> ApiFlows:
        return ApiFlows(
            self.task_queue,
            self.two_phase_prepare_timeout_s,
            self.choreography_timeout_s,
            self.wallet_snapshot_every,
        )


def env_names(field: str) -> list[str]:
    """The environment variables that set a field, for error messages that name them."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"SAGA_{field.upper()}"]
