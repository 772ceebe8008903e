"""What each component is configured with: the typed slices `Settings` hands out.

A component takes its slice, never `Settings`: it can be built (in a test, in
another application) without the environment, and a reader sees what it
depends on. Only entry points and the wiring read `settings.py`; this module
imports nothing of the project, so every layer may take its slice from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

RelayMode = Literal["hybrid", "poll", "cdc"]


@dataclass(frozen=True)
class MetricsEndpoint:
    """A Prometheus endpoint; port 0: off."""

    host: str
    port: int

    @property
    def enabled(self) -> bool:
        return self.port != 0


@dataclass(frozen=True)
class NatsConfig:
    url: str  # one server, or a cluster's nodes comma-separated
    user: str | None = None
    password: SecretStr | None = None

    @property
    def servers(self) -> list[str]:
        return [one.strip() for one in self.url.split(",") if one.strip()]


@dataclass(frozen=True)
class TemporalConfig:
    target: str
    namespace: str = "default"
    codec_key: SecretStr | None = None
    codec_key_id: str = "k1"


@dataclass(frozen=True)
class CardKeys:
    """What seals card tokens to their order (security.sealed)."""

    card_token_key: SecretStr | None
    card_token_key_id: str
    # Tokens sealed with the payload codec key before tokens had a key of their own.
    codec_key: SecretStr | None
    codec_key_id: str
    environment: Literal["dev", "production"]
    # Where dev keeps its generated key when none is configured.
    data_dir: Path


@dataclass(frozen=True)
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class TracingConfig:
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"


@dataclass(frozen=True)
class RelaySettings:
    """The relay process: where it reads, where it publishes, how often."""

    database_url: str
    nats: NatsConfig
    metrics: MetricsEndpoint
    mode: RelayMode = "hybrid"
    poll_interval_s: float = 1.0
    notify_batch_ms: float = 5.0
    cdc_poll_s: float = 0.05
    batch_size: int = 500
    publish_timeout_s: float = 5.0
    max_attempts: int = 10
    retention_s: int = 7 * 24 * 3600
    lease_ttl_s: float = 10.0
    stream_replicas: int = 1


@dataclass(frozen=True)
class ConsumersSettings:
    database_url: str
    nats: NatsConfig
    metrics: MetricsEndpoint


@dataclass(frozen=True)
class BreakerConfig:
    failure_rate_threshold: float = 50.0
    sliding_window_size: int = 100
    minimum_calls: int = 10
    wait_in_open_s: float = 60.0
    half_open_calls: int = 10


@dataclass(frozen=True)
class ProviderConfig:
    """The payment provider's client: its HTTP pool, its retries, its breaker."""

    url: str
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    max_connections: int = 20
    retry_initial_s: float = 0.5
    retry_cap_s: float = 20.0
    step_deadline_s: float = 120.0
    breaker: BreakerConfig = field(default_factory=BreakerConfig)


@dataclass(frozen=True)
class BulkheadConfig:
    """One service's share of a worker process (domain.bulkheads)."""

    database_url: str
    pool_size: int
    max_activities: int
    max_local_steps: int


@dataclass(frozen=True)
class Deployment:
    """This process as one version of a Worker Deployment."""

    name: str
    build_id: str


@dataclass(frozen=True)
class WorkerSettings:
    task_queue: str
    bulkheads: dict[str, BulkheadConfig]
    # How long a local step waits for its service's turn; 0: refused at once.
    local_step_max_wait_s: float = 0.0
    deployment: Deployment | None = None
    metrics: MetricsEndpoint = field(default_factory=lambda: MetricsEndpoint("127.0.0.1", 0))


@dataclass(frozen=True)
class TwoPhaseConfig:
    prepare_timeout_s: float = 10.0
    xa_lock_timeout_ms: int = 5000
    wallet_snapshot_every: int = 50
    card_hold_ttl_s: int = 7 * 24 * 3600


@dataclass(frozen=True)
class FraudConfig:
    max_order_total: int = 1_000_000
    max_orders_per_minute: int = 30


@dataclass(frozen=True)
class RecoveryConfig:
    interval_s: float = 30.0
    grace_s: float = 60.0
    stuck_saga_grace_s: float = 600.0


@dataclass(frozen=True)
class ChoreographySettings:
    database_url: str
    nats: NatsConfig
    timeout_s: float = 120.0
    sweep_interval_s: float = 2.0
    concurrency: int = 4
    metrics: MetricsEndpoint = field(default_factory=lambda: MetricsEndpoint("127.0.0.1", 0))


@dataclass(frozen=True)
class ApiAccess:
    """Who may call the API, by role (api.roles), and how much they may send."""

    read_keys: tuple[SecretStr, ...] = ()
    order_keys: tuple[SecretStr, ...] = ()
    admin_keys: tuple[SecretStr, ...] = ()
    max_body_bytes: int = 65536


@dataclass(frozen=True)
class ApiFlows:
    """What the API's routes need, beyond the request, to start and settle flows."""

    task_queue: str
    prepare_timeout_s: float = 10.0
    choreography_timeout_s: float = 120.0
    wallet_snapshot_every: int = 50
