"""The API registers the saga's search attributes at start, so an API deployed before
the workers (a rolling upgrade adding one, as OrderSummary was) can start sagas.

On a dev server of its own, started without them: removing one from the session's
server would leave it unusable to the tests after this one until its caches refresh.
"""

from __future__ import annotations

import contextlib

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from domain.search_attributes import SAGA_SEARCH_ATTRIBUTES
from stack.ports import free_port
from stack.temporal import TemporalDevServer
from temporal_client import connect
from tests.asgi import serve


async def test_the_api_registers_the_search_attributes_a_cluster_lacks(settings, tmp_path):
    server = TemporalDevServer(free_port(), free_port(), None, tmp_path / "logs", {}, True)
    await server.start()
    try:
        own = settings.model_copy(update={"temporal_address": server.address})
        client = await connect(own.temporal())

        async def registered() -> set[str]:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=own.temporal_namespace)
            )
            return set(listed.custom_attributes)

        wanted = {key.name for key in SAGA_SEARCH_ATTRIBUTES}
        assert not wanted & await registered()
        async with contextlib.asynccontextmanager(serve)(own) as api:
            assert (await api.get("/healthz")).status_code == 200
        assert wanted <= await registered()
    finally:
        await server.stop()
