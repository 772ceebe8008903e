"""`python -m chaos` (`make chaos`): see chaos.run; exits 1 unless every order ended clean.

python -m chaos [--faults 8] [--orders N] [--concurrency 6] [--partition-s 5 30] [--seed N]
                [--nats-nodes 3] [--long-s 150] [--outbox-retention-s 300]
                [--json FILE] [--plot FILE] [--keep]

Ctrl-C and SIGTERM end the run the same way, the fault being struck undone on the
way out (a partition's nft table deleted, a latency qdisc removed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from bench.orders import Mix
from chaos.faults import undo_leftovers
from chaos.long_faults import MIN_LONG_S
from chaos.plot import write_chaos_plot
from chaos.report import MAX_GROWTH, ChaosPlan, ChaosReport
from chaos.run import run_chaos
from stack.errors import StackError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Orders under load while the worker, the relay, the choreography "
        "handlers, PostgreSQL and Temporal are killed and restarted, and PostgreSQL and the "
        "payment provider partitioned or slowed, at random moments; then every saga is "
        "awaited and audited.",
    )
    parser.add_argument("--faults", type=int, default=8, help="faults to strike (all kinds)")
    parser.add_argument("--concurrency", type=int, default=6, help="clients placing orders")
    parser.add_argument("--min-gap", type=float, default=3.0, help="seconds of load between")
    parser.add_argument("--max-gap", type=float, default=10.0)
    parser.add_argument(
        "--partition-s",
        type=float,
        nargs=2,
        default=(5.0, 30.0),
        metavar=("MIN", "MAX"),
        help="seconds a partition (or added latency) lasts, drawn in this range",
    )
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to wait at the end")
    parser.add_argument(
        "--choreography",
        type=float,
        default=0.3,
        help="share of card-only orders choreographed instead of orchestrated (0-1)",
    )
    parser.add_argument("--seed", type=int, help="for the same faults in the same order")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--plot", type=Path, help="and its PNG (throughput, latency, memory)")
    parser.add_argument(
        "--orders", type=int, help="run until this many orders, the faults spread over them"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    parser.add_argument(
        "--nats-nodes",
        type=int,
        choices=(1, 3, 5),
        default=3,
        help="JetStream as a cluster of this many nodes, one killed at a time (1: one server)",
    )
    parser.add_argument(
        "--long-s",
        type=float,
        help="also partition the provider and kill the relay this long each, past the "
        f"alert rules' `for:` (at least {MIN_LONG_S:.0f}); their alerts must fire",
    )
    parser.add_argument(
        "--outbox-retention-s",
        type=int,
        default=300,
        help="the relay prunes published outbox rows older than this (production: 7 days)",
    )
    args = parser.parse_args(argv)
    if args.long_s is not None and args.long_s < MIN_LONG_S:
        parser.error(f"--long-s must be at least {MIN_LONG_S:.0f} to outlast the rules' `for:`")
    if args.outbox_retention_s < 120:
        parser.error("--outbox-retention-s must be at least 120 (chaos.witness's overlap)")
    if args.faults < 1 or args.concurrency < 1:
        parser.error("--faults and --concurrency must be at least 1")
    if args.orders is not None and args.orders < 1:
        parser.error("--orders must be at least 1")
    if not 0 <= args.choreography <= 1:
        parser.error("--choreography must be between 0 and 1")
    if not 0 < args.min_gap <= args.max_gap:
        parser.error("need 0 < --min-gap <= --max-gap")
    if not 0 < args.partition_s[0] <= args.partition_s[1]:
        parser.error("need 0 < --partition-s MIN <= MAX")
    return args


def print_report(report: ChaosReport) -> None:
    summary = report.summary()
    print(
        f"\n{summary['orders']} orders in {summary['load_s']}s of load; "
        f"settled in {summary['settle_s']}s"
    )
    print("outcomes (meant -> ended):")
    for kind, ended in summary["outcomes"].items():
        print(f"  {kind:<13} {ended}")
    print(f"outcomes by saga mode: {summary['outcomes_by_mode']}")
    for lost in summary["cost"]:
        print(f"  meant to confirm, {lost['status']}: {lost['order_id']} ({lost['reason']})")
    print(f"orders in PostgreSQL by status: {summary['orders_by_status']}")
    for mismatch in summary["told_not_held"]:
        print(f"  told one thing, PostgreSQL holds another: {mismatch}")
    print(f"requests retried by clients (5xx, dropped connections): {summary['retried_requests']}")
    for fault, why in summary["skipped"].items():
        print(f"{fault} skipped: {why}")
    print(f"apps restarted after dying unasked: {summary['crash_restarts'] or 'none'}")
    if report.open_sagas:
        print(f"sagas still open: {report.open_sagas}")
    print_alerts(report)
    if report.samples is not None:
        growth = report.samples.growth()
        grown = ", ".join(f"{name} {g:+.0%}" for name, g in sorted(growth.items()))
        print(f"memory after warm-up, late vs early: {grown or 'too few samples'}")
        for name, g in report.memory_grew.items():
            print(f"  {name} grew {g:+.0%}, past {MAX_GROWTH:.0%}")
        outbox = report.outbox_growth
        judged = "too short to tell" if outbox is None else f"{outbox:+.0%}"
        print(f"outbox rows once pruning runs (retention {report.outbox_retention_s}s): {judged}")
    print(
        f"audit: {len(report.violations)} violation(s)"
        if report.violations
        else "audit: no violations"
    )
    for violation in report.violations:
        print(f"  {violation}")
    print("PASSED" if report.passed else f"FAILED (logs: {report.log_dir})")  # fmt: skip


def print_alerts(report: ChaosReport) -> None:
    if report.alerts_note:
        print(f"alerts: {report.alerts_note}")
        return
    print(f"alerts (the run's Prometheus on deploy/prometheus/alerts.yml): {len(report.alerts)}")
    for e in report.alerts:
        fired = "pending only" if e["fired_at_s"] is None else f"fired {e['fired_at_s']}s"
        cleared = "active" if e["cleared_at_s"] is None else f"cleared {e['cleared_at_s']}s"
        during = ", ".join(e["during_faults"]) or "no fault"
        print(f"  {e['alert']} {e['labels']}: from {e['pending_at_s']}s, {fired}, {cleared}")
        print(f"    during {during}")
    for still in report.alerts_still_firing:
        print(f"  still firing after the run settled: {still}")
    for missed in report.alerts_untold:
        print(f"  never told: {missed}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plan = ChaosPlan(
        faults=args.faults,
        gap_s=(args.min_gap, args.max_gap),
        partition_s=(args.partition_s[0], args.partition_s[1]),
        concurrency=args.concurrency,
        mix=Mix(declined=0.05, out_of_stock=0.05, cancelled=0.05, store_credit=0.15),
        settle_s=args.settle,
        choreography=args.choreography,
        seed=args.seed,
        keep=args.keep,
        nats_nodes=args.nats_nodes,
        orders=args.orders,
        outbox_retention_s=args.outbox_retention_s,
        long_s=args.long_s,
    )
    try:
        report = asyncio.run(_until_signalled(plan))
    except StackError as err:  # a part crash-looped or a server died: no verdict to give
        print(f"FAILED: {err.summary}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every fault undone, the system stopped", file=sys.stderr)
        return 130
    finally:
        # The faults undo themselves as they unwind; this is for what no unwinding reached.
        for leftover in undo_leftovers(also_own=True):
            print(f"removed {leftover} on the way out", file=sys.stderr)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.summary(), indent=2) + "\n")
    if args.plot and report.samples is not None:
        write_chaos_plot(args.plot, report.outcomes, report.struck, report.samples)
        print(f"wrote {args.plot}")
    return 0 if report.passed else 1


async def _until_signalled(plan: ChaosPlan) -> ChaosReport:
    """The run, cancelled by SIGTERM as asyncio.run cancels it on Ctrl-C: either way the
    fault being struck and the system unwind through their `finally`s."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_chaos(plan, say=lambda line: print(line, flush=True))
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
