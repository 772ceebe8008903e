"""The order saga as choreography: services reacting to each other's events on JetStream.

The flow and what travels with it: domain.choreography. The reactions:
choreography.handlers. Placing and cancelling an order (the orders service's
entry points the API calls): choreography.orders. The timeout that finds a
stalled order: choreography.timeouts. The process: `python -m choreography`.
"""
