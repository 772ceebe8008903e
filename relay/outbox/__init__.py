"""Every statement the relay runs on the services' outbox tables, in SQLAlchemy Core.

Both relay modes, the operators' commands and the metrics read and settle
outbox rows only through these, so a row means the same to all of them.
Each takes the outbox it works on (db.kit_tables.outbox): the relay serves
the outboxes it is handed, and names none. A pass's own statements are in
`claims`, a failed publish's in `retries`, the operators' and pruning's in
`upkeep`; callers take them from here.
"""

from relay.outbox.claims import PassConn, claim, mark_published, retrying_ahead, settle
from relay.outbox.retries import Attempt, hand_to_sweep, lock_pending, pending_among, record_attempt
from relay.outbox.upkeep import counts, delete_published, failed_rows, requeue_failed

__all__ = [
    "Attempt",
    "PassConn",
    "claim",
    "counts",
    "delete_published",
    "failed_rows",
    "hand_to_sweep",
    "lock_pending",
    "mark_published",
    "pending_among",
    "record_attempt",
    "requeue_failed",
    "retrying_ahead",
    "settle",
]
