"""A consumer process's figures in Prometheus text: what each durable did, and what waits.

    GET http://127.0.0.1:9103/metrics   (python -m consumers)
    GET http://127.0.0.1:9104/metrics   (python -m choreography)

The outcomes are this process's own counts; the backlog is JetStream's view of
the durable, shared by every instance pulling from it, so an alert on it works
however many instances run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.consumer import ConsumerStats, Outcome
from messaging.wire import STREAM
from observability.endpoint import serve

log = logging.getLogger(__name__)

# A page must answer within a scraper's timeout (Prometheus: 10 s; the compose
# health checks: 3 s) even with NATS or PostgreSQL away.
INFO_TIMEOUT_S = 1.0
EXTRA_TIMEOUT_S = 1.5

# More lines for the same page, read with the process's engine (the
# choreography's open and overdue orders).
Extra = Callable[[AsyncEngine], Awaitable[list[str]]]


@dataclass(frozen=True)
class ConsumerMetrics:
    host: str
    port: int  # 0: not served
    extra: Extra | None = None

    async def start(
        self,
        js: JetStreamContext,
        engine: AsyncEngine,
        stats: ConsumerStats,
        consumers: Sequence[str],
    ) -> asyncio.Server | None:
        if not self.port:
            return None

        async def body() -> str:
            text = await render(js, stats, consumers)
            if self.extra is None:
                return text
            try:
                more = await asyncio.wait_for(self.extra(engine), EXTRA_TIMEOUT_S)
            except Exception as err:  # the database away: the consumers' figures still answer
                log.warning("metrics: %r", err)
                return text
            return text + "\n".join(more) + "\n"

        return await serve(self.host, self.port, body)


async def render(
    js: JetStreamContext,
    stats: ConsumerStats,
    consumers: Sequence[str],
) -> str:
    lines = [
        "# HELP saga_consumer_messages_total Messages handled, by consumer and outcome.",
        "# TYPE saga_consumer_messages_total counter",
    ]
    for name in consumers:
        for outcome in Outcome:
            value = stats.handled[(name, outcome)]
            lines.append(
                f'saga_consumer_messages_total{{consumer="{name}",outcome="{outcome}"}} {value}'
            )
    lines += await _backlog(js, consumers)
    return "\n".join(lines) + "\n"


_BACKLOG = {
    "pending": ("num_pending", "Messages in the stream not yet delivered to the consumer."),
    "ack_pending": ("num_ack_pending", "Messages delivered and neither acked nor given up."),
    "redelivered": ("num_redelivered", "Messages delivered more than once and still unacked."),
}


async def _backlog(js: JetStreamContext, consumers: Sequence[str]) -> list[str]:
    # At once and briefly: a scrape during a NATS outage still answers (well
    # within a scraper's timeout), the gauges missing.
    answers = await asyncio.gather(
        *(js.consumer_info(STREAM, name, timeout=INFO_TIMEOUT_S) for name in consumers),
        return_exceptions=True,
    )
    infos = {}
    for name, answer in zip(consumers, answers, strict=True):
        if isinstance(answer, nats.errors.Error | TimeoutError):
            log.debug("consumer_info %s failed: %r", name, answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            infos[name] = answer
    lines = []
    for metric, (field, help_text) in _BACKLOG.items():
        lines += [
            f"# HELP saga_consumer_{metric}_messages {help_text}",
            f"# TYPE saga_consumer_{metric}_messages gauge",
        ]
        lines += [
            f'saga_consumer_{metric}_messages{{consumer="{name}"}} {getattr(info, field) or 0}'
            for name, info in infos.items()
        ]
    return lines
