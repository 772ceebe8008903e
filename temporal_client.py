"""Connecting to Temporal the same way from the worker, the API and the tools.

Also what a worker is made of besides its activities (workflows, data
converter, interceptors), in one place: the replayer that checks recorded
histories in CI is built from the same definition, so the two cannot drift.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError
from temporalio.worker import Interceptor, Replayer

from domain.search_attributes import SAGA_SEARCH_ATTRIBUTES
from observability.temporal_metrics import StepTelemetry
from observability.tracing import TEMPORAL_TRACING
from security.codec import AesGcmCodec, parse_key
from settings_slices import TemporalConfig
from workflows.registry import WORKFLOWS

log = logging.getLogger(__name__)

DATA_CONVERTER: DataConverter = pydantic_data_converter
# The worker's own interceptors; the client's (tracing) reach workers built from
# it by themselves. INTERCEPTORS is what a worker ends up with, for the replayer.
WORKER_INTERCEPTORS: tuple[Interceptor, ...] = (StepTelemetry(),)
INTERCEPTORS: tuple[Interceptor, ...] = (*WORKER_INTERCEPTORS, TEMPORAL_TRACING)


def data_converter(temporal: TemporalConfig | None = None) -> DataConverter:
    """The converter clients and workers use: pydantic, encrypted when a key is set."""
    codec = payload_codec(temporal) if temporal is not None else None
    if codec is None:
        return DATA_CONVERTER
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec)


def payload_codec(temporal: TemporalConfig) -> AesGcmCodec | None:
    if temporal.codec_key is None:
        return None
    return AesGcmCodec(parse_key(temporal.codec_key.get_secret_value()), temporal.codec_key_id)


def replayer(temporal: TemporalConfig | None = None) -> Replayer:
    """A replayer configured exactly as the worker's workflow side.

    With a payload key, it reads encrypted histories
    (`sagactl fetch-history` from an encrypting cluster) too.
    """
    return Replayer(
        workflows=WORKFLOWS, data_converter=data_converter(temporal), interceptors=INTERCEPTORS
    )


async def connect(
    temporal: TemporalConfig, wait_seconds: float = 0.0, runtime: Runtime | None = None
) -> Client:
    """Connect with the pydantic converter, retrying for up to `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            return await Client.connect(
                temporal.target,
                namespace=temporal.namespace,
                data_converter=data_converter(temporal),
                interceptors=[TEMPORAL_TRACING],
                runtime=runtime,
            )
        except RuntimeError as err:  # the SDK's bridge reports connection failures so
            if time.monotonic() >= deadline:
                raise
            log.info("Temporal at %s not reachable yet (%s); retrying", temporal.target, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the saga's search attributes on a cluster that lacks them (idempotent)."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in SAGA_SEARCH_ATTRIBUTES
        if key.name not in existing.custom_attributes
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
        log.info("registered search attributes %s", sorted(missing))
    except RPCError as err:
        # A concurrent worker may have won the race; anything else is the operator's to fix.
        log.warning("could not register search attributes %s: %s", sorted(missing), err)


async def register_search_attributes(client: Client, namespace: str) -> None:
    """`ensure_search_attributes` for the API, which can serve reads without them:
    a cluster that refuses (no operator rights) is logged, not fatal."""
    try:
        await ensure_search_attributes(client, namespace)
    except RPCError as err:
        log.warning("could not check the saga's search attributes: %s", err)
