"""The API registers the saga's search attributes at start, so an API deployed before
the workers (a rolling upgrade adding one, as OrderSummary was) can start sagas."""

from __future__ import annotations

import contextlib

from temporalio.api.operatorservice.v1 import (
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)

from domain.search_attributes import ORDER_SUMMARY
from temporal_client import ensure_search_attributes
from tests.asgi import serve


async def _registered(client, namespace: str) -> set[str]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return set(listed.custom_attributes)


async def test_the_api_registers_a_search_attribute_the_cluster_lacks(settings, client):
    namespace = settings.temporal_namespace
    await client.operator_service.remove_search_attributes(
        RemoveSearchAttributesRequest(namespace=namespace, search_attributes=[ORDER_SUMMARY.name])
    )
    try:
        assert ORDER_SUMMARY.name not in await _registered(client, namespace)
        async with contextlib.asynccontextmanager(serve)(settings) as api:
            assert (await api.get("/healthz")).status_code == 200
        assert ORDER_SUMMARY.name in await _registered(client, namespace)
    finally:  # the session's other tests start sagas with it
        await ensure_search_attributes(client, namespace)
