"""What the saga kit's log helpers learn of orders: the application's hook.

The kit logs the workflow (or correlation) id a line is about and knows
nothing of orders; entrypoints hand `order_log_fields` to
observability.logs.configure, so every such line names its order too.
"""

from __future__ import annotations

# The workflow ids of an order's saga, its 2PC coordinator, and the correlation
# ids of a choreographed order's events.
ORDER_PREFIXES = ("order-", "tpc-", "choreography-")


def order_id_of(workflow_id: str) -> str | None:
    """The order a saga, its 2PC coordinator or a choreographed order's events are about,
    from its workflow id or correlation id."""
    for prefix in ORDER_PREFIXES:
        if workflow_id.startswith(prefix):
            return workflow_id[len(prefix) :]
    return None


def order_log_fields(workflow_id: str) -> dict[str, str]:
    """`order_id`, for a line about one of an order's workflows; nothing otherwise."""
    order_id = order_id_of(workflow_id)
    return {"order_id": order_id} if order_id else {}
