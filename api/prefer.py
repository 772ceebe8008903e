"""`Prefer: wait=N` (RFC 7240): how long a client will wait for the answer it really wants.

POST /orders honours it by holding the request until the order's saga has
ended, at most N seconds (and at most MAX_WAIT_S, whatever N is). As RFC 7240
asks of a preference a server cannot use, a `wait` that is not a number of
seconds in digits is ignored (the request is answered as without it), never
refused; a larger N is applied as MAX_WAIT_S, and `Preference-Applied` says
which wait was.
"""

from __future__ import annotations

import re

MAX_WAIT_S = 30
_WAIT = re.compile(r'\s*wait\s*=\s*"?([0-9]{1,9})"?\s*(?:;.*)?', re.IGNORECASE | re.ASCII)


def wait_seconds(prefer: str | None) -> int | None:
    """The wait the request asks for, capped; None when it asks none (or none we understand)."""
    if not prefer:
        return None
    for preference in prefer.split(","):
        found = _WAIT.fullmatch(preference)
        if found:
            return min(int(found.group(1)), MAX_WAIT_S)
    return None
