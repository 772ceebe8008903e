"""Latency without netem: packets to a port queued by iptables, released late.

Where the kernel has sch_netem, chaos.netfaults.Latency delays with it. This
project's own VM has none, but has the xtables NFQUEUE target: an iptables
rule in `mangle OUTPUT` queues each tcp packet sent on `lo` to the port, and
chaos.packet_hold (a process of its own, so the run's event loop never stalls
a release) gives each its verdict after the delay. The rule carries the
comment `saga_chaos_<pid>`, so a run SIGKILLed mid-fault leaves a rule the
next run finds and deletes (remove_leftover_rules), and with `--queue-bypass`
it lets packets straight through once no process holds the queue.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from chaos.netfaults import NetFaultError, alive, run_tool

IPTABLES = "iptables-legacy"  # ip_tables, not nft: the NFQUEUE target is xtables'
COMMENT_PREFIX = "saga_chaos_"
_COMMENT = re.compile(rf"--comment \"?{COMMENT_PREFIX}(\d+)\"?")
_QUEUE = 5806  # the kernel's queue number for our held packets
_ROOT = Path(__file__).resolve().parent.parent


def held_latency_unusable() -> str | None:
    """Why packets cannot be held here (None: they can)."""
    if shutil.which(IPTABLES) is None:
        return f"{IPTABLES} is not installed (Debian package iptables)"
    try:
        targets = Path("/proc/net/ip_tables_targets").read_text().split()
    except OSError:
        return "the kernel has no ip_tables"
    if "NFQUEUE" not in targets:
        return "the kernel has no NFQUEUE target"
    try:
        run_tool(IPTABLES, "-w", "-t", "mangle", "-S", "OUTPUT")
    except NetFaultError as err:
        return f"iptables is not permitted (needs root or CAP_NET_ADMIN): {err}"
    return None


def queue_rule(port: int, pid: int) -> list[str]:
    return [
        "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", str(port),
        "-m", "comment", "--comment", f"{COMMENT_PREFIX}{pid}",
        "-j", "NFQUEUE", "--queue-num", str(_QUEUE), "--queue-bypass",
    ]  # fmt: skip


def remove_leftover_rules(also_own: bool = False) -> list[str]:
    """Delete the rules of runs no longer alive (with `also_own`, ours too)."""
    if shutil.which(IPTABLES) is None:
        return []
    removed = []
    for line in run_tool(IPTABLES, "-w", "-t", "mangle", "-S", "OUTPUT").splitlines():
        match = _COMMENT.search(line)
        if not match or not line.startswith("-A "):
            continue
        pid = int(match.group(1))
        if not alive(pid) or (also_own and pid == os.getpid()):
            run_tool(IPTABLES, "-w", "-t", "mangle", "-D", *line[3:].replace('"', "").split())
            removed.append(f"iptables mangle rule {COMMENT_PREFIX}{pid}")
    return removed


class HeldLatency:
    """`with HeldLatency(port, 200, 50):` delays each packet sent to `port` on lo by
    200 ± 50 ms until the block ends, however it ends."""

    def __init__(self, port: int, delay_ms: int = 200, jitter_ms: int = 50) -> None:
        self.port, self.delay_ms, self.jitter_ms = port, delay_ms, jitter_ms
        self.detail = ""
        self._holder: subprocess.Popen[str] | None = None

    def __enter__(self) -> HeldLatency:
        self._holder = subprocess.Popen(
            [sys.executable, "-m", "chaos.packet_hold", "--queue", str(_QUEUE),
             "--delay-ms", str(self.delay_ms), "--jitter-ms", str(self.jitter_ms)],
            cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != "holding":  # bound, or it says why not
            self._stop_holder()
            said = self._holder.stderr.read() if self._holder.stderr else ""
            raise NetFaultError(f"chaos.packet_hold: {said.strip() or 'did not start'}")
        try:
            run_tool(IPTABLES, "-w", "-t", "mangle", "-A", *queue_rule(self.port, os.getpid()))
        except BaseException:
            self._stop_holder()
            raise
        self._since = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            run_tool(IPTABLES, "-w", "-t", "mangle", "-D", *queue_rule(self.port, os.getpid()))
        finally:
            self._stop_holder()  # after the rule: nothing is queued with no one to let it go
        self.detail = (
            f"tcp to port {self.port} on lo held {self.delay_ms} ± {self.jitter_ms} ms "
            f"(NFQUEUE) for {time.monotonic() - self._since:.1f} s"
        )

    def _stop_holder(self) -> None:
        holder = self._holder
        if holder is None or holder.poll() is not None:
            return
        holder.terminate()
        try:
            holder.wait(5)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
