"""Choreography, 2PC, recovery, the relay, the consumers, and every process's logs and traces."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from settings.servers import LOOPBACK


class FlowFields(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

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
