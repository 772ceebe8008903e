"""Reading a paged list of the API the way a client does: page after page, by its Links."""

from __future__ import annotations

from typing import Any

import httpx


async def walk(api: httpx.AsyncClient, url: str, **params: Any) -> list[list[Any]]:
    """Every page of a list, following each answer's Link: rel=next."""
    pages = []
    response = await api.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        following = response.links.get("next")
        if following is None:
            return pages
        response = await api.get(following["url"])
