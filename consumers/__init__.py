"""Consumers of the EVENTS stream: durable JetStream pull consumers with an inbox.

Each event is applied at most once per consumer however often it is delivered:
its id is claimed in `readmodels.inbox` in the transaction that applies it.
"""
