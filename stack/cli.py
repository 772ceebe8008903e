"""`sagactl` (also `python -m stack`): run the whole system, migrate, seed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from db.relay_ring import close_engine
from settings import Settings
from stack.errors import StackError
from startup import ConfigError, checked_settings, describe

logger = logging.getLogger(__name__)

_ERROR_EXIT = 2  # argparse uses 2 for usage errors too: "could not do what you asked"


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from stack.run import run

    return asyncio.run(run(settings))


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from stack import control
    from stack.run import data_dir, project_root

    socket = control.socket_path(data_dir(settings, project_root()))
    print(asyncio.run(control.ask(socket, args.action, "worker")))
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from db.migrate import upgrade
    from stack.run import redact_url

    upgrade(settings.database_target)
    print(f"migrated {redact_url(settings.database_target)} to head")
    return 0


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from db.seed import seed_demo_catalog

    added = asyncio.run(seed_demo_catalog(settings.database_target))
    print(f"demo catalog: {added} products added")
    return 0


def _recover(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from db.engine import create_engine
    from recovery.sweep import sweep
    from temporal_client import connect
    from wiring.activities import card_participant, payment_provider_client

    async def once() -> int:
        client = await connect(settings.temporal())
        engine = create_engine(settings.database_target, pool_size=2)
        provider = payment_provider_client(settings.provider())
        try:
            card = card_participant(engine, settings, provider)
            grace = timedelta(seconds=settings.recovery_grace_s)
            report = await sweep(engine, client, grace, card)
        finally:
            await provider.aclose()
            await close_engine(engine)
        for label, txs in (
            ("committed", report.committed),
            ("aborted", report.aborted),
            ("left to their running coordinator", report.left_to_coordinator),
        ):
            for tx_id in txs:
                print(f"{label}: {tx_id}")
        if not report:
            print("nothing to recover")
        return 0

    return asyncio.run(once())


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    from relay.__main__ import _main

    asyncio.run(_main(settings))
    return 0


def _relay_status(settings: Settings, args: argparse.Namespace) -> int:
    from db.engine import create_engine
    from relay.admin import cdc_slot, partitions_held, status
    from wiring.served import RELAYED

    async def once() -> int:
        engine = create_engine(settings.database_target, pool_size=1)
        try:
            rows = await status(engine, RELAYED)
            held = await partitions_held(engine, RELAYED)
            slot = await cdc_slot(engine)
        finally:
            await close_engine(engine)
        print(f"{'service':<10}{'pending':>9}{'failed':>8}{'published/min':>15}{'lag':>10}")
        for r in rows:
            lag = f"{r.lag_s:.1f}s" if r.lag_s is not None else "-"
            print(
                f"{r.service:<10}{r.pending:>9}{r.failed:>8}{r.published_last_minute:>15}{lag:>10}"
            )
        print(f"relay instances holding partitions: {len(held)}")
        for owner, parts in sorted(held.items()):
            print(f"  {owner}: {len(parts)} partitions")
        if slot is not None and slot.lost:
            print(
                "CDC slot saga_outbox: LOST (past max_slot_wal_keep_size); a CDC relay "
                "makes it again and drains what is pending from the tables"
            )
        elif slot is not None:
            reader = "a CDC relay is reading it" if slot.active else "no CDC relay reading it now"
            print(
                f"CDC slot saga_outbox: retains {(slot.retained_bytes or 0) / 1_048_576:.1f} MB "
                f"of WAL (limit SAGA_PG_MAX_SLOT_WAL_KEEP_MB / max_slot_wal_keep_size), "
                f"wal_status {slot.wal_status}, {reader}"
            )
        return 0

    return asyncio.run(once())


def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from db.engine import create_engine
    from relay.admin import dead_letters, redrive
    from wiring.served import RELAYED

    async def once() -> int:
        engine = create_engine(settings.database_target, pool_size=1)
        try:
            if args.redrive is not None:
                moved = await redrive(engine, RELAYED, args.redrive or None)
                print(f"re-driven: {moved} event(s)")
                return 0
            letters = await dead_letters(engine, RELAYED)
        finally:
            await close_engine(engine)
        for d in letters:
            print(
                f"{d.service}\t{d.event_id}\t{d.aggregate}\t{d.event_type}\t"
                f"attempts={d.attempts}\t{d.last_error or ''}"
            )
        if not letters:
            print("no dead letters")
        return 0

    return asyncio.run(once())


def _event_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event id (a UUID): {text!r}") from None


def _record_histories(settings: Settings, args: argparse.Namespace) -> int:
    from history_corpus.cases import CASES
    from history_corpus.record import record

    try:
        written = asyncio.run(record(args.case or list(CASES), args.out, args.tag, args.force))
    except (ValueError, FileExistsError) as err:  # an unknown case, a file kept
        print(f"sagactl record-histories: {err}", file=sys.stderr)
        return _ERROR_EXIT
    for path in written:
        print(f"wrote {path}")
    return 0


def _fetch_history(settings: Settings, args: argparse.Namespace) -> int:
    from history_corpus.record import fetch
    from temporal_client import connect

    async def once() -> int:
        client = await connect(settings.temporal())
        try:
            print(f"wrote {await fetch(client, args.workflow_id, args.name, args.out)}")
        except (FileExistsError, ValueError) as err:  # a file kept; encrypted, no key
            print(f"sagactl fetch-history: {err}", file=sys.stderr)
            return _ERROR_EXIT
        return 0

    return asyncio.run(once())


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from audit import Scope, run_audit
    from db.engine import create_engine
    from wiring.activities import payment_provider_client

    since = datetime.now(UTC) - timedelta(hours=args.hours) if args.hours else None
    scope = Scope(since=since, grace=timedelta(minutes=args.grace_minutes))

    async def once() -> int:
        from temporal_client import connect

        try:
            temporal = (
                None if args.no_temporal else await connect(settings.temporal(), wait_seconds=5)
            )
        except RuntimeError as err:
            raise RuntimeError(
                f"Temporal at {settings.temporal_target} did not answer ({err}); "
                "--no-temporal audits without looking for stuck sagas"
            ) from err
        engine = create_engine(settings.database_target, pool_size=2)
        provider = None if args.no_provider else payment_provider_client(settings.provider())
        try:
            found = await run_audit(
                engine, scope, provider, temporal, read_model=not args.no_read_model
            )
        finally:
            await close_engine(engine)
            if provider is not None:
                await provider.aclose()
        for violation in found:
            print(violation)
        print(f"{len(found)} violation(s)" if found else "no violations")
        return 1 if found else 0

    return asyncio.run(once())


_COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "run": (
        _run,
        "start Temporal, PostgreSQL and NATS (unless TEMPORAL_ADDRESS, DATABASE_URL or "
        "NATS_URL name them), migrate, seed, then the worker and the API; a crashed app is "
        "restarted; Ctrl-C stops all",
    ),
    "worker": (
        _worker,
        "stop: the running `sagactl run` stops its worker and keeps it stopped, so you can run "
        "`python worker.py` by hand (it prints how); start: it takes the worker back",
    ),
    "migrate": (_migrate, "apply the database migrations (DATABASE_URL or SAGA_PG_*)"),
    "seed": (_seed, "load the demo catalog; products already there are left alone"),
    "relay": (_relay, "run the outbox relay (NOTIFY + poll) in the foreground"),
    "relay-status": (_relay_status, "outbox lag, pending and failed events per service"),
    "dead-letters": (
        _dead_letters,
        "list events the relay gave up on; --redrive [EVENT_ID ...] queues them again (all "
        "when no id is given)",
    ),
    "record-histories": (
        _record_histories,
        "run the saga paths on a throwaway embedded stack and write their histories to the "
        "replay corpus (tests/histories); --case NAME for some only",
    ),
    "fetch-history": (
        _fetch_history,
        "copy one workflow's history from the Temporal server in settings into the corpus "
        "as NAME (e.g. order_saga/seen_in_production), decrypted, its card tokens and ids "
        "replaced by placeholders",
    ),
    "audit": (
        _audit,
        "check that every order ended fully done or fully undone (stock, money, shipments, "
        "stock and wallet conservation, open 2PC branches and holds, events published and "
        "projected, stuck sagas, the provider's books); exit 1 listing violations",
    ),
    "recover": (
        _recover,
        "resolve 2PC branches and card holds whose coordinator is gone, from the decision "
        "log (presumed abort); SAGA_RECOVERY_GRACE_S sets how old they must be",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagactl",
        description="Saga orchestrator tools. Settings come from SAGA_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == "worker":
            sub.add_argument("action", choices=("stop", "start"))
        if name == "dead-letters":
            sub.add_argument("--redrive", nargs="*", metavar="EVENT_ID", type=_event_id)
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
        return _ERROR_EXIT
