"""A durable JetStream pull consumer whose handler's effect commits once per event.

For each message, in one PostgreSQL transaction: claim the event id in the
inbox (a repeat finds it claimed and skips the handler), run the handler on
the same connection, commit; then ack. The ack comes after the commit, so a
crash in between redelivers the message, and the inbox turns that delivery
into a no-op.

A handler that raises rolls back its effect and its inbox claim together, and
the message is nak'ed with a delay growing with its delivery count; after
`max_deliver` deliveries it is terminated and logged. A body that is not an
event envelope can never succeed, so it is terminated at once: a poison
message does not hold up the ones behind it. So is an event that came on
another event's subject, or from a service that does not own its aggregate
(messaging.wire.misrouting): refused, logged, never applied.

Failed messages are redelivered later while the next ones are applied, so a
handler must not rely on delivery order (the order-history projection orders
by the events' own timestamps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers import inbox
from consumers.consumer import (
    INFRASTRUCTURE_ERRORS,
    Consumer,
    ConsumerStats,
    Outcome,
    RunnerOptions,
    parse,
    redelivery_delay,
)
from db.relay_ring import ringing_after_commit
from messaging.wire import STREAM, Envelope, misrouting
from observability.tracing import TRACER
from observability.tracing import extract as extract_trace

log = logging.getLogger(__name__)


class ConsumerRunner:
    """Runs one `Consumer`: binds its durable, then fetches and applies until stopped."""

    def __init__(
        self,
        js: JetStreamContext,
        engine: AsyncEngine,
        consumer: Consumer,
        options: RunnerOptions | None = None,
        stats: ConsumerStats | None = None,
    ) -> None:
        self.consumer = consumer
        self.options = options or RunnerOptions()
        self._stats = stats
        self._js = js
        self._engine = engine
        self._sub: JetStreamContext.PullSubscription | None = None

    def consumer_config(self) -> ConsumerConfig:
        subjects = self.consumer.filter_subject
        return ConsumerConfig(
            name=self.consumer.name,
            durable_name=self.consumer.name,
            filter_subject=subjects if isinstance(subjects, str) else None,
            filter_subjects=None if isinstance(subjects, str) else list(subjects),
            deliver_policy=self.consumer.deliver_policy,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.options.ack_wait_s,
            max_deliver=self.options.max_deliver or -1,
        )

    async def bind(self) -> None:
        """Create the durable consumer (or update it to this configuration) and subscribe."""
        # Creating an existing durable with an updatable difference updates it,
        # so instances of one consumer can start together.
        await self._js.add_consumer(STREAM, self.consumer_config())
        if self._sub is None:
            self._sub = await self._js.pull_subscribe_bind(
                durable=self.consumer.name, stream=STREAM
            )

    _stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Apply messages until `stop` is set; the batch in hand is finished or released."""
        self._stop = stop
        await self.bind()
        log.info(
            "consumer %s bound to %s (%s)",
            self.consumer.name,
            STREAM,
            self.consumer.filter_subject,
            extra={"consumer": self.consumer.name},
        )
        try:
            while not stop.is_set():
                batch = await self._fetch(stop)
                for n, msg in enumerate(batch):
                    if stop.is_set():
                        await _release(batch[n:])
                        break
                    outcome = await self.handle(msg)
                    if self._stats is not None:
                        self._stats.count(self.consumer.name, outcome)
        finally:
            await self._unsubscribe()
        log.info("consumer %s stopped", self.consumer.name, extra={"consumer": self.consumer.name})

    async def _fetch(self, stop: asyncio.Event) -> list[Msg]:
        assert self._sub is not None, "bind() first"
        try:
            return await self._sub.fetch(self.options.batch_size, self.options.fetch_timeout_s)
        except TimeoutError:  # nats' own and asyncio's: nothing arrived in time
            return []
        except nats.errors.ConnectionClosedError:
            raise
        except nats.errors.Error as err:
            log.warning("consumer %s: fetch failed (%r); retrying", self.consumer.name, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.options.fetch_error_pause_s)
            return []

    async def handle(self, msg: Msg) -> Outcome:
        """Apply one message at most once, then ack, nak or terminate it."""
        envelope = parse(msg.data)
        if envelope is None:
            log.error(
                "consumer %s: terminated a message that is not an event envelope (%s, seq %s)",
                self.consumer.name,
                msg.subject,
                msg.metadata.sequence.stream,
                extra={"consumer": self.consumer.name},
            )
            await msg.term()
            return Outcome.POISON
        refusal = misrouting(msg.subject, envelope, self.consumer.owners)
        if refusal is not None:
            # Forged or misdirected: never applied, whatever its body says.
            log.error(
                "consumer %s: refused event %s (seq %s): %s",
                self.consumer.name,
                envelope.event_id,
                msg.metadata.sequence.stream,
                refusal,
                extra=self._ids(envelope),
            )
            await msg.term()
            return Outcome.REFUSED
        if self.consumer.wants is not None and not self.consumer.wants(envelope):
            await msg.ack()
            return Outcome.SKIPPED
        try:
            with TRACER.start_as_current_span(
                f"consume {envelope.event_type}",
                context=extract_trace(msg.headers),
                kind=SpanKind.CONSUMER,
                attributes={"consumer": self.consumer.name, "event_id": envelope.event_id},
            ):
                applied = await self._apply_through_outages(msg, envelope)
        except Exception as err:  # the handler's fault: redeliver later, then give up
            return await self._failed(msg, envelope, err)
        await msg.ack()
        outcome = Outcome.APPLIED if applied else Outcome.DUPLICATE
        log.info(
            "consumer %s: %s %s %s of %s %s",
            self.consumer.name,
            outcome.value,
            envelope.event_type,
            envelope.event_id,
            envelope.aggregate_type,
            envelope.aggregate_id,
            extra=self._ids(envelope),
        )
        return outcome

    async def _apply_through_outages(self, msg: Msg, envelope: Envelope) -> bool:
        """Apply, waiting out database outages in place.

        A redelivery would spend one of the message's max_deliver deliveries on
        a fault that is not the event's, and a long outage would use them all up
        and lose the event from the read model. So hold the message (telling
        JetStream we are still on it) and retry until the database answers or
        the runner stops; only the handler's own errors are redelivered.
        """
        delay = self.options.backoff_base_s
        while True:
            try:
                return await self._apply(envelope)
            except INFRASTRUCTURE_ERRORS as err:
                if self._stop is not None and self._stop.is_set():
                    raise
                log.warning(
                    "consumer %s: database unavailable (%r); retrying event %s in %.1f s",
                    self.consumer.name,
                    err,
                    envelope.event_id,
                    delay,
                    extra=self._ids(envelope),
                )
                await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.ack_wait_s / 3)

    async def _apply(self, envelope: Envelope) -> bool:
        """Claim and apply in one transaction; False if this consumer already applied it."""
        # Steps the handler runs join this transaction: their rings wait for its commit.
        async with ringing_after_commit(self._engine), self._engine.begin() as conn:
            if not await inbox.claim(
                conn, self.consumer.inbox, self.consumer.name, envelope.event_id
            ):
                return False
            await self.consumer.handler(conn, envelope)
        return True

    async def _failed(self, msg: Msg, envelope: Envelope, err: Exception) -> Outcome:
        delivered = msg.metadata.num_delivered
        if 0 < self.options.max_deliver <= delivered:
            log.error(
                "consumer %s: gave up on event %s after %d deliveries",
                self.consumer.name,
                envelope.event_id,
                delivered,
                exc_info=err,
                extra=self._ids(envelope),
            )
            await msg.term()
            return Outcome.GAVE_UP
        delay = redelivery_delay(delivered, self.options)
        log.warning(
            "consumer %s: event %s failed on delivery %d (%r); redelivery in %.2f s",
            self.consumer.name,
            envelope.event_id,
            delivered,
            err,
            delay,
            extra=self._ids(envelope),
        )
        await msg.nak(delay=delay)
        return Outcome.RETRY

    def _ids(self, envelope: Envelope) -> dict[str, str]:
        return {"consumer": self.consumer.name, "event_id": envelope.event_id}

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


async def _release(msgs: Sequence[Msg]) -> None:
    """Hand back fetched messages we will not process, for another instance to take now."""
    for msg in msgs:
        await msg.nak()
