"""The choreography's process: each chosen service's handlers, and the orders service's timeout.

Every service has one durable consumer on the subjects it reacts to
(domain.choreography.REACTIONS) and passes over orchestrated orders' events
unapplied. Deliveries are unlimited, because an undo must end done. A step
that reserves, charges or ships stops retrying at its order's deadline (it is
passed over from then on); the orders service's confirm and cancel retry
only what the database refused (their own refusals are answers).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence

from nats.js.api import DeliverPolicy

from choreography import metrics
from choreography.handlers import Reactions, is_choreographed
from choreography.timeouts import TimeoutStats, run_periodically
from consumers.consumer import Consumer, RunnerOptions
from consumers.metrics import ConsumerMetrics
from consumers.service import Background, serve
from domain.choreography import REACTIONS
from messaging.wire import subject_for
from settings_slices import ChoreographySettings
from wiring.served import INBOX, OWNERS
from wiring.services import SERVICES

CONSUMER_PREFIX = "choreography"
OPTIONS = RunnerOptions(max_deliver=0)


def parse_services(text: str) -> list[str]:
    """`all` or a comma list of services; a ValueError names an unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or "all" in names:
        return list(SERVICES)
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise ValueError(
            f"unknown service {', '.join(unknown)}: choose from {', '.join(SERVICES)}, all"
        )
    return list(dict.fromkeys(names))


def service_consumers(
    reactions: Reactions,
    services: Iterable[str],
    prefix: str = CONSUMER_PREFIX,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> list[Consumer]:
    """One durable consumer per service, named `{prefix}-{service}`."""
    return [
        Consumer(
            name=f"{prefix}-{service}",
            filter_subject=subjects_of(service),
            handler=reactions.handler(service),
            deliver_policy=deliver_policy,
            wants=is_choreographed,
            inbox=INBOX,
            owners=OWNERS,
        )
        for service in services
    ]


def subjects_of(service: str) -> tuple[str, ...]:
    """The subjects of the events `service` reacts to."""
    mine = {subject_for(r.aggregate, r.event) for r in REACTIONS if r.service == service}
    return tuple(sorted(mine))


async def run(
    choreography: ChoreographySettings,
    reactions: Reactions,
    stop: asyncio.Event,
    services: Sequence[str],
    *,
    prefix: str = CONSUMER_PREFIX,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> None:
    """Run `services`' handlers (and the timeout sweep with the orders service) until `stop`."""
    background: list[Background] = []
    extra = None
    if "orders" in services:
        timeouts = TimeoutStats()
        background.append(
            functools.partial(
                run_periodically, interval_s=choreography.sweep_interval_s, stats=timeouts
            )
        )
        extra = functools.partial(metrics.lines, timeouts=timeouts)
    endpoint = ConsumerMetrics(choreography.metrics.host, choreography.metrics.port, extra)
    await serve(
        choreography.database_url,
        choreography.nats,
        service_consumers(reactions, services, prefix, deliver_policy),
        stop,
        OPTIONS,
        instances=choreography.concurrency,
        background=background,
        metrics=endpoint,
    )
