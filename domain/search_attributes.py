"""The saga's custom search attributes: one definition for the workflow, the API,
the worker's registration and the embedded dev server's start flags."""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
ORDER_TOTAL = SearchAttributeKey.for_int("OrderTotal")
# The static summary again, as an attribute: the Web UI's list shows attributes as
# columns, but not user metadata (UI 2.54).
ORDER_SUMMARY = SearchAttributeKey.for_keyword("OrderSummary")

SAGA_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str] | SearchAttributeKey[int], ...] = (
    ORDER_STATUS,
    CUSTOMER_ID,
    ORDER_TOTAL,
    ORDER_SUMMARY,
)

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
}


def cli_search_attributes() -> dict[str, str]:
    """As `temporal server start-dev --search-attribute Name=Type` wants them."""
    return {key.name: _CLI_TYPE_NAMES[key.indexed_value_type] for key in SAGA_SEARCH_ATTRIBUTES}
