"""Bounded pages for every list the API serves.

A list takes `limit`, from 1 to a published maximum (over it: a 422 naming
`query.limit`), and `after`, the cursor of the last item of the page before.
The next page is a keyset read (`WHERE key > cursor` on an index in the
list's order), as cheap at the thousandth page as at the first; an offset
would make PostgreSQL walk every row it skips. A full page's answer names the
next one in its `Link` header (`rel="next"`); a page without one is the last.
The body stays the list it always was.

A cursor is opaque to clients: the page's last sort key, as base64url JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request, Response
from pydantic import AfterValidator, Field, TypeAdapter
from pydantic_core import PydanticCustomError

from api.schemas import QUERY_INTEGER, Rfc3339Time

T = TypeVar("T")

ORDERS_MAX, ORDERS_DEFAULT = 200, 50
ORDER_EVENTS_MAX, ORDER_EVENTS_DEFAULT = 500, 100
PRODUCTS_MAX, PRODUCTS_DEFAULT = 500, 100
NEXT_PAGE = {
    "Link": {
        "description": 'The next page, `<...>; rel="next"`, when this one is full',
        "schema": {"type": "string"},
    }
}
_AFTER = "the page after this cursor: take it from the previous answer's Link: rel=next"


def encode(*key: object) -> str:
    """The cursor of the item whose sort key is `key`."""
    plain = [part.isoformat() if isinstance(part, datetime) else part for part in key]
    text = json.dumps(plain, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# Sort keys as cursors carry them. FastAPI would take a tuple-typed query
# parameter for a repeated one, so `after` is declared as the text, checked
# here, and decoded by the route.
_BY_TIME = TypeAdapter(tuple[Rfc3339Time, str])
_BY_EVENT = TypeAdapter(tuple[Rfc3339Time, uuid.UUID])
_BY_SKU = TypeAdapter(tuple[str])


def _decode(adapter: TypeAdapter[Any], value: str) -> Any:
    try:
        if not value.isascii():
            raise ValueError(value)
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        # Times as RFC 3339 text, ids as strings: no number passes for either.
        return adapter.validate_json(text)
    except (ValueError, binascii.Error):  # pydantic's ValidationError is a ValueError
        raise PydanticCustomError(
            "cursor", "Input should be a cursor as a Link: rel=next gave it"
        ) from None


def _checked(adapter: TypeAdapter[Any]) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None:
            _decode(adapter, value)
        return value

    return AfterValidator(check)


def time_key(after: str | None) -> tuple[datetime, str] | None:
    """The (time, id) a checked cursor carries."""
    return None if after is None else tuple(_decode(_BY_TIME, after))


def event_key(after: str | None) -> tuple[datetime, str] | None:
    """The (time, event id) a checked cursor carries."""
    if after is None:
        return None
    occurred_at, event_id = _decode(_BY_EVENT, after)
    return occurred_at, str(event_id)


def sku_key(after: str | None) -> str | None:
    """The sku a checked cursor carries."""
    return None if after is None else str(_decode(_BY_SKU, after)[0])


def _limit(default: int, maximum: int) -> list[Any]:
    """What `limit` is: an integer from 1 to `maximum`, published as such."""
    described = f"items on a page: 1 to {maximum}, {default} if not given"
    return [Field(ge=1, le=maximum), QUERY_INTEGER, Query(description=described)]


def _after(adapter: TypeAdapter[Any]) -> list[Any]:
    """What `after` is: a cursor this API gave, for a list in this order; else a 422."""
    return [Field(max_length=512), _checked(adapter), Query(description=_AFTER)]


# (created_at, order_id) of the last order listed: newest first, ties by id.
OrdersAfter = Annotated[str | None, *_after(_BY_TIME)]
OrdersLimit = Annotated[int, *_limit(ORDERS_DEFAULT, ORDERS_MAX)]
# (occurred_at, event_id) of the last event listed: oldest first.
OrderEventsAfter = Annotated[str | None, *_after(_BY_EVENT)]
OrderEventsLimit = Annotated[int, *_limit(ORDER_EVENTS_DEFAULT, ORDER_EVENTS_MAX)]
# The sku of the last product listed.
ProductsAfter = Annotated[str | None, *_after(_BY_SKU)]
ProductsLimit = Annotated[int, *_limit(PRODUCTS_DEFAULT, PRODUCTS_MAX)]


def page(
    request: Request,
    response: Response,
    rows: Sequence[T],
    limit: int,
    key: Callable[[T], tuple[object, ...]],
) -> list[T]:
    """`limit` of the rows (the query asked for one more); with more, a Link to the next page."""
    shown = list(rows[:limit])
    if len(rows) > limit:
        following = request.url.include_query_params(after=encode(*key(shown[-1])))
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return shown
