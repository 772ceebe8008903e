"""The EVENTS stream: created or brought up to date by the relay, awaited by consumers.

Every relay instance calls `ensure_stream` at start-up, so it is idempotent
and safe to run from two processes at once. Consumer processes only wait for
the stream (`wait_for_stream`): in the compose stack their NATS users may not
create, change or delete it (deploy/nats/nats-server.conf).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from messaging.wire import DEAD_LETTER_PREFIX, STREAM, SUBJECT_PREFIX

log = logging.getLogger(__name__)

SUBJECTS = [f"{SUBJECT_PREFIX}.>", f"{DEAD_LETTER_PREFIX}.>"]
MAX_AGE_S = 7 * 24 * 3600.0
# JetStream drops a message whose Nats-Msg-Id it has seen within this window,
# so a relay that republishes a row after a lost ack stores it once. It bounds
# how long a relay may take to retry a publish and still be deduplicated; the
# consumers' inbox catches repeats from further apart.
DUPLICATE_WINDOW_S = 120.0
# JSStreamNameExistErr: the stream exists with another configuration.
_NAME_IN_USE = 10058
_ATTEMPTS = 3
_STREAM_POLL_S = 1.0


def stream_config(max_age_s: float = MAX_AGE_S, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        num_replicas=replicas,
        name=STREAM,
        subjects=list(SUBJECTS),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_age=max_age_s,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


async def ensure_stream(
    js: JetStreamContext, max_age_s: float = MAX_AGE_S, replicas: int = 1
) -> None:
    """Create the stream, or update it to this configuration if it differs.

    Creating a stream that exists with the same configuration succeeds, so two
    processes starting together both succeed; one that finds another
    configuration updates it. Every caller must pass the same `max_age_s` and
    `replicas` (3 on a JetStream cluster: each event on three nodes before its
    ack), or they will keep updating the stream to their own.
    """
    config = stream_config(max_age_s, replicas)
    for _ in range(_ATTEMPTS):
        try:
            await js.add_stream(config)
            return
        except BadRequestError as err:
            if err.err_code != _NAME_IN_USE:
                raise
        try:
            await js.update_stream(config)
            log.info("stream %s updated to its current configuration", STREAM)
            return
        except NotFoundError:
            # Deleted between our two calls: create it again.
            continue
    raise RuntimeError(f"stream {STREAM} could be neither created nor updated")


async def wait_for_stream(js: JetStreamContext, stop: asyncio.Event) -> bool:
    """Wait until the stream exists (the relay creates it); False if `stop` came first."""
    told = False
    while not stop.is_set():
        try:
            await js.stream_info(STREAM)
            return True
        except NotFoundError:
            if not told:
                log.info("waiting for stream %s: the relay creates it", STREAM)
                told = True
        except (nats.errors.Error, TimeoutError) as err:  # NATS away: it reconnects
            log.warning("stream %s: %r; retrying", STREAM, err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _STREAM_POLL_S)
    return False
