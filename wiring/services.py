"""The services of this application, and the schemas the saga kit serves them in.

The one list of services: everything that visits every service's outbox or
schema (the relay, the audit, the choreography, the tables) takes it from here.
Migrations keep their own copy: a merged migration never changes.
"""

from __future__ import annotations

SERVICES = ("orders", "inventory", "payments", "shipping")

# Fixed for the life of the data: it is baked into each outbox row's partition.
RELAY_PARTITIONS = 64

# Which schema holds each XA participant's branches.
XA_SCHEMAS = {"stock": "inventory", "store_credit": "payments"}

# Where the kit's shared tables live: the 2PC coordinator's log, the relay's
# leases, the consumers' inbox (beside the read models they feed).
COORDINATOR_SCHEMA = "coordinator"
RELAY_SCHEMA = "relay"
READ_MODELS_SCHEMA = "readmodels"

# The service whose outbox each aggregate's events come from: the relay names
# that service as an envelope's `source` (the schema it read the row from), so
# a row written to another service's outbox arrives with the wrong source,
# and the consumers refuse it (messaging.wire.misrouting).
OWNER_OF_AGGREGATE = {
    "order": "orders",
    "reservation": "inventory",
    "product": "inventory",
    "payment": "payments",
    "wallet": "payments",
    "shipment": "shipping",
}
