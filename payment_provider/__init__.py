"""A Stripe-like payment provider simulator: a real HTTP server with in-memory books.

It stands in for the external card processor, so the payment activities can be
exercised over the network, including the provider's failures: declines by test
token, idempotency keys, and injected faults (`/admin/faults`).
"""

from payment_provider.app import create_app
from payment_provider.state import ProviderState

__all__ = ["ProviderState", "create_app"]
