"""The saga's custom search attributes: one definition for the workflow, the API,
the worker's registration and the embedded dev server's start flags."""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
ORDER_TOTAL = SearchAttributeKey.for_int("OrderTotal")

SAGA_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str] | SearchAttributeKey[int], ...] = (
    ORDER_STATUS,
    CUSTOMER_ID,
    ORDER_TOTAL,
)

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
}


def cli_search_attributes() -> dict[str, str]:
    """As `temporal server start-dev --search-attribute Name=Type` wants them."""
    return {key.name: _CLI_TYPE_NAMES[key.indexed_value_type] for key in SAGA_SEARCH_ATTRIBUTES}
