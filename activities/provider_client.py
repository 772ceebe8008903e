"""The payment provider over HTTP: one pooled client and one circuit breaker per worker.

Every answer is sorted into one of three kinds, which is all callers branch on:
- a result (2xx);
- `ProviderRefused`: the provider answered and said no (any other 4xx: 400,
  401, 402, 404, 409, 422). Asking again gets the same no, so nothing retries it;
- `ProviderUnavailable`: no usable answer (connect error, timeout, dropped
  connection, 408, 429, 5xx, or no free connection in our own pool). The
  same request may well succeed later; it carries the provider's
  `Retry-After` when it sent one.
The breaker counts the third kind as failures and refusals as successes (the
provider is up and judging); a 429 counts as neither: the provider is up and
asked us to slow down, which Retry-After already does; nor does a full pool,
which is our congestion, not the provider's. While the breaker is
open, calls fail at once with `resilience.breaker.CircuitOpen`.

Every request that changes money carries an Idempotency-Key, derived by the
caller from workflow id + step, so a retry after a lost answer is answered
from the provider's record instead of charging again.
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Any

import httpx

from resilience.breaker import CircuitBreaker

log = logging.getLogger(__name__)


class ProviderRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"payment provider refused ({status} {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class ProviderUnavailable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"payment provider unavailable: {reason}")
        self.reason = reason
        self.retry_after = retry_after


class PaymentProviderClient:
    def __init__(
        self,
        base_url: str,
        breaker: CircuitBreaker,
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        max_connections: int = 20,
    ) -> None:
        self._breaker = breaker
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def authorize(
        self, *, order_id: str, amount: int, currency: str, payment_token: str, key: str
    ) -> dict[str, Any]:
        body = {
            "order_id": order_id,
            "amount": amount,
            "currency": currency,
            "payment_token": payment_token,
        }
        return await self._call("POST", "/v1/authorizations", key=key, json=body)

    async def capture(self, authorization_id: str, *, key: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/authorizations/{authorization_id}/capture", key=key)

    async def void(self, authorization_id: str, *, key: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/authorizations/{authorization_id}/void", key=key)

    async def refund(self, authorization_id: str, amount: int, *, key: str) -> dict[str, Any]:
        body = {"authorization_id": authorization_id, "amount": amount}
        return await self._call("POST", "/v1/refunds", key=key, json=body)

    async def payments_for(self, order_id: str) -> dict[str, Any]:
        """What the provider holds for an order: authorizations, captures, refunds."""
        return await self._call("GET", "/v1/payments", params={"order_id": order_id})

    async def _call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key is not None else None
        with self._breaker.acquire() as permit:
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.PoolTimeout as err:
                # Our own pool is full: congestion here says nothing about the provider.
                permit.ignore()
                raise ProviderUnavailable(f"no free connection for {method} {path}") from err
            except httpx.TransportError as err:  # connect, timeouts, dropped connections
                permit.failure()
                raise ProviderUnavailable(f"{type(err).__name__} on {method} {path}") from err
            status = response.status_code
            if status == 408:
                permit.failure()
                raise ProviderUnavailable(f"408 on {method} {path}")
            if status == 429:
                permit.ignore()
                raise ProviderUnavailable("429 rate limited", _retry_after(response))
            if status >= 500:
                permit.failure()
                raise ProviderUnavailable(f"{status} on {method} {path}", _retry_after(response))
            permit.success()
            if status >= 400:
                code, message = _error_of(response)
                raise ProviderRefused(status, code, message)
            body: dict[str, Any] = response.json()
            return body


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "unknown", response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        log.warning("ignoring unreadable Retry-After %r", value)
        return None
    return max(0.0, when.timestamp() - time.time())
