"""What the saga kit serves for this application: the tables it is handed.

`RELAYED`: every service's outbox, in the service list's order (the order a
relay round visits them), and the relay's lease tables; `INBOX`: the
consumers' inbox; `OWNERS`: which service's outbox each aggregate's events
must come from (consumers refuse any other source).
"""

from __future__ import annotations

from collections.abc import Mapping

from db.kit_tables import RelayTables
from db.tables import inbox, relay_leases, relay_members, service_tables
from wiring.services import OWNER_OF_AGGREGATE, RELAY_PARTITIONS, SERVICES

RELAYED = RelayTables(
    outboxes=tuple(service_tables[service].outbox for service in SERVICES),
    leases=relay_leases,
    members=relay_members,
    partitions=RELAY_PARTITIONS,
)
INBOX = inbox
OWNERS: Mapping[str, str] = OWNER_OF_AGGREGATE
