"""`sagactl worker stop|start`: the worker held stopped for an operator, then taken back.

The control socket (stack.control) brings the request to the supervisor. A
worker stopped this way is not restarted until it is asked for back; the
answer tells the operator how to run it by hand meanwhile, with the addresses
of the servers `sagactl run` started (never a password, nor what their shell
already says).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from stack.errors import StackError
from stack.redaction import redact_url
from stack.restarts import describe_exit
from stack.supervision import Supervision

logger = logging.getLogger(__name__)


async def stop_or_start(
    supervision: Supervision, action: str, app: str, root: Path, by_hand: Callable[[str], str]
) -> str:
    """Stop and hold `app`, or release it; the answer for the operator.

    `by_hand(app)` is the command line that runs it as the supervisor does, from `root`.
    """
    if app != "worker":
        raise StackError(f"only the worker is handed over, not {app!r}")
    if action == "start":
        held = supervision.held(app)
        process = supervision.release(app)
        state = "back under `sagactl run`" if held else "was not stopped; running"
        return f"{app} {state} as pid {process.pid}"
    if action != "stop":
        raise StackError(f"unknown action {action!r}: stop or start")
    if supervision.held(app):
        return f"{app} is already stopped; `sagactl worker start` hands it back"
    code = await supervision.stop_and_hold(app)
    logger.warning("%s stopped for an operator; held until `sagactl worker start`", app)
    return (
        f"{app} stopped ({describe_exit(code)}); `sagactl run` keeps it stopped until "
        f"`sagactl worker start`.\nTo run it by hand with the same settings, from "
        f"{root} in this shell:\n  {by_hand(app)}"
    )


def command_line(argv: list[str], addresses: Mapping[str, str], env: Mapping[str, str]) -> str:
    """`argv` with the addresses it is given, as a shell line."""
    # Only what the caller's environment does not already say: never a secret of theirs.
    told = {k: v for k, v in addresses.items() if env.get(k) != v}
    assignments = [f"{k}={shlex.quote(redact_url(v))}" for k, v in told.items()]
    return " ".join([*assignments, shlex.join(argv)])
