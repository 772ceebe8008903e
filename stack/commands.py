"""What each `sagactl` command does (stack.cli parses the line and picks one).

Each takes the settings and the parsed arguments and returns the exit code.
Their imports are inside them: `sagactl --help` and a command's usage error
must not wait for Temporal's SDK, SQLAlchemy and the rest to load.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from db.relay_ring import close_engine
from settings import Settings

ERROR_EXIT = 2  # argparse uses 2 for usage errors too: "could not do what you asked"


def run(settings: Settings, args: argparse.Namespace) -> int:
    from stack.run import run

    return asyncio.run(run(settings))


def worker(settings: Settings, args: argparse.Namespace) -> int:
    from stack import control
    from stack.run import data_dir, project_root

    socket = control.socket_path(data_dir(settings, project_root()))
    print(asyncio.run(control.ask(socket, args.action, "worker")))
    return 0


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    from db.migrate import upgrade
    from stack.redaction import redact_url

    upgrade(settings.database_target)
    print(f"migrated {redact_url(settings.database_target)} to head")
    return 0


def seed(settings: Settings, args: argparse.Namespace) -> int:
    from db.seed import seed_demo_catalog

    added = asyncio.run(seed_demo_catalog(settings.database_target))
    print(f"demo catalog: {added} products added")
    return 0


def recover(settings: Settings, args: argparse.Namespace) -> int:
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


def relay(settings: Settings, args: argparse.Namespace) -> int:
    from relay.__main__ import _main

    asyncio.run(_main(settings))
    return 0


def relay_status(settings: Settings, args: argparse.Namespace) -> int:
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


def dead_letters(settings: Settings, args: argparse.Namespace) -> int:
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


def event_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event id (a UUID): {text!r}") from None


def record_histories(settings: Settings, args: argparse.Namespace) -> int:
    from history_corpus.cases import CASES
    from history_corpus.record import record

    try:
        written = asyncio.run(record(args.case or list(CASES), args.out, args.tag, args.force))
    except (ValueError, FileExistsError) as err:  # an unknown case, a file kept
        print(f"sagactl record-histories: {err}", file=sys.stderr)
        return ERROR_EXIT
    for path in written:
        print(f"wrote {path}")
    return 0


def fetch_history(settings: Settings, args: argparse.Namespace) -> int:
    from history_corpus.record import fetch
    from temporal_client import connect

    async def once() -> int:
        client = await connect(settings.temporal())
        try:
            print(f"wrote {await fetch(client, args.workflow_id, args.name, args.out)}")
        except (FileExistsError, ValueError) as err:  # a file kept; encrypted, no key
            print(f"sagactl fetch-history: {err}", file=sys.stderr)
            return ERROR_EXIT
        return 0

    return asyncio.run(once())


def audit(settings: Settings, args: argparse.Namespace) -> int:
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
