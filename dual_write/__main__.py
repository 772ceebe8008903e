"""`python -m dual_write MODE SKU QUANTITY --request-id ID [--crash]` (see dual_write)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from db.engine import create_engine
from db.relay_ring import close_engine
from dual_write.restock import Mode, restock
from messaging.connection import connect
from startup import load_settings


def _crash() -> None:
    # No cleanup, no flush, no atexit: a power cut as far as this process knows.
    os.kill(os.getpid(), signal.SIGKILL)


async def _run(args: argparse.Namespace) -> None:
    settings = load_settings("python -m dual_write")
    engine = create_engine(settings.database_target, pool_size=1)
    nc = await connect(settings.nats(), "saga-dual-write", asyncio.Event())
    assert nc is not None  # None only once stopped, and nothing stops it
    try:
        crash = _crash if args.crash else (lambda: None)
        await restock(
            Mode(args.mode), engine, nc.jetstream(), args.sku, args.quantity, args.request_id, crash
        )
    finally:
        await nc.close()
        await close_engine(engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dual_write", description=__doc__)
    parser.add_argument("mode", choices=[m.value for m in Mode])
    parser.add_argument("sku")
    parser.add_argument("quantity", type=int)
    parser.add_argument("--request-id", required=True)
    parser.add_argument("--crash", action="store_true", help="SIGKILL between the two writes")
    args = parser.parse_args(argv)
    if args.quantity < 1:
        parser.error("quantity must be at least 1")
    try:
        asyncio.run(_run(args))
    except (LookupError, OSError) as err:
        print(f"dual_write: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
