"""`sagactl` (also `python -m stack`): run the whole system, migrate, seed."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from settings import Settings
from stack import commands
from stack.errors import StackError
from startup import ConfigError, checked_settings, describe

logger = logging.getLogger(__name__)


_COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "run": (
        commands.run,
        "start Temporal, PostgreSQL and NATS (unless TEMPORAL_ADDRESS, DATABASE_URL or "
        "NATS_URL name them), migrate, seed, then the worker and the API; a crashed app is "
        "restarted; Ctrl-C stops all",
    ),
    "worker": (
        commands.worker,
        "stop: the running `sagactl run` stops its worker and keeps it stopped, so you can run "
        "`python worker.py` by hand (it prints how); start: it takes the worker back",
    ),
    "migrate": (commands.migrate, "apply the database migrations (DATABASE_URL or SAGA_PG_*)"),
    "seed": (commands.seed, "load the demo catalog; products already there are left alone"),
    "relay": (commands.relay, "run the outbox relay (NOTIFY + poll) in the foreground"),
    "relay-status": (commands.relay_status, "outbox lag, pending and failed events per service"),
    "dead-letters": (
        commands.dead_letters,
        "list events the relay gave up on; --redrive [EVENT_ID ...] queues them again (all "
        "when no id is given)",
    ),
    "record-histories": (
        commands.record_histories,
        "run the saga paths on a throwaway embedded stack and write their histories to the "
        "replay corpus (tests/histories); --case NAME for some only",
    ),
    "fetch-history": (
        commands.fetch_history,
        "copy one workflow's history from the Temporal server in settings into the corpus "
        "as NAME (e.g. order_saga/seen_in_production), decrypted, its card tokens and ids "
        "replaced by placeholders",
    ),
    "audit": (
        commands.audit,
        "check that every order ended fully done or fully undone (stock, money, shipments, "
        "stock and wallet conservation, open 2PC branches and holds, events published and "
        "projected, stuck sagas, the provider's books); exit 1 listing violations",
    ),
    "recover": (
        commands.recover,
        "resolve 2PC branches and card holds whose coordinator is gone, from the decision "
        "log (presumed abort); SAGA_RECOVERY_GRACE_S sets how old they must be",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagactl",
        description="Saga orchestrator tools. Settings come from SAGA_* environment variables.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == "worker":
            sub.add_argument("action", choices=("stop", "start"))
        if name == "dead-letters":
            sub.add_argument("--redrive", nargs="*", metavar="EVENT_ID", type=commands.event_id)
        if name in ("record-histories", "fetch-history"):
            from history_corpus.files import CORPUS

            sub.add_argument("--out", type=Path, default=CORPUS, help="corpus directory")
        if name == "audit":
            sub.add_argument("--hours", type=float, help="only orders of the last HOURS")
            sub.add_argument(
                "--grace-minutes",
                type=float,
                default=10.0,
                help="open orders, branches and holds younger than this are in flight",
            )
            sub.add_argument(
                "--no-provider", action="store_true", help="skip the payment provider's books"
            )
            sub.add_argument(
                "--no-temporal", action="store_true", help="skip looking for stuck sagas"
            )
            sub.add_argument(
                "--no-read-model",
                action="store_true",
                help="skip the order-history read model (no consumer runs)",
            )
        if name == "record-histories":
            sub.add_argument("--case", action="append", metavar="NAME")
            sub.add_argument("--tag", help="file names <case>@<tag>.json: one per release")
            sub.add_argument("--force", action="store_true", help="overwrite existing files")
        if name == "fetch-history":
            sub.add_argument("workflow_id")
            sub.add_argument("name", metavar="NAME", help="<workflow dir>/<case>")
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, StackError):
        return exc.summary  # written for people already; details are in the log files
    if isinstance(exc, ValidationError):
        # Name the variable the person set, not the field behind it; never echo a secret.
        return describe(exc)
    if isinstance(exc, ConfigError):
        return str(exc)
    text = " ".join(str(exc).split())  # e.g. pydantic's multi-line validation errors
    name = type(exc).__name__
    return f"{name}: {text[:400]}" if text else name


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler, _ = _COMMANDS[args.command]
    try:
        settings = checked_settings()
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # httpx logs every readiness poll of the API at INFO.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The traceback is for whoever asks for it; the terminal gets one line.
        logger.debug("sagactl %s failed", args.command, exc_info=True)
        print(f"sagactl {args.command}: {_one_line(exc)}", file=sys.stderr)
        return commands.ERROR_EXIT
