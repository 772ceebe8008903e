"""Consumers of the EVENTS stream: durable JetStream pull consumers with an inbox.

Each event is applied at most once per consumer however often it is delivered:
its id is claimed in the inbox it is handed (the application's
`readmodels.inbox`) in the transaction that applies it. `order_history` is the
application's projection; the rest is the kit.
"""
