"""Network faults made with the kernel's own tools: nftables drops, tc netem delays.

A partition is an nftables table of its own, `inet saga_chaos_<pid>_<n>`,
whose input chain drops every tcp packet on `lo` to or from one port. Dropped,
not refused: no RST comes back, so an open connection's packets go
unanswered (it hangs, retransmitting) and a new connection's SYN times out,
as across a real partition. Undo is `nft delete table`, done in `__exit__`,
which runs on an exception, a cancellation or Ctrl-C alike. A run that was
SIGKILLed cannot undo; the next run removes every table whose pid is dead
(remove_leftovers), so its rules do not persist.

Latency is a prio qdisc on `lo` whose fourth band is a netem delay, fed by a
u32 filter on the port; undo deletes the root qdisc. Kernels built without
sch_netem (this project's Firecracker VM, booted `nomodule`) cannot do it,
and netem_unusable() says so before a run rather than the run pretending.

Commands run synchronously: each takes milliseconds, and an undo that cannot
itself be interrupted by a second cancellation is the point.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path
from types import TracebackType

TABLE_PREFIX = "saga_chaos_"
_TABLE = re.compile(rf"^{TABLE_PREFIX}(\d+)_\d+$")
_QDISC = "5a6a:"  # our root qdisc's handle on lo, to find and remove only ours
_QDISC_OWNER = Path(tempfile.gettempdir()) / "saga-chaos-latency.pid"
_serial = count()


class NetFaultError(RuntimeError):
    """An nft or tc command failed: the fault could not be applied."""


def run_tool(*argv: str, script: str | None = None) -> str:
    done = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetFaultError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def nft_unusable() -> str | None:
    """Why partitions cannot be made here (None: they can)."""
    if shutil.which("nft") is None:
        return "nft is not installed (Debian package nftables)"
    try:
        run_tool("nft", "list", "tables")
    except NetFaultError as err:
        return f"nft is not permitted (needs root or CAP_NET_ADMIN): {err}"
    return None


def netem_unusable() -> str | None:
    """Why latency cannot be added here (None: it can), tried on a throwaway network
    namespace so the probe touches nothing of the machine's own."""
    if shutil.which("tc") is None or shutil.which("ip") is None:
        return "tc or ip is not installed (Debian package iproute2)"
    ns = f"saga_netem_probe_{os.getpid()}"
    try:
        run_tool("ip", "netns", "add", ns)
    except NetFaultError as err:
        return f"cannot make a network namespace to probe netem (needs root): {err}"
    try:
        run_tool("ip", "-n", ns, "link", "set", "lo", "up")
        # netem alone first: the one most kernels lack, and the one to name when missing.
        bare = ("sch_netem", ["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        clear = ("", ["qdisc", "del", "dev", "lo", "root"])
        for kind, argv in [bare, clear, *_latency_commands(port=5433, delay_ms=1, jitter_ms=0)]:
            try:
                run_tool("tc", "-n", ns, *argv)
            except NetFaultError as err:
                unknown = "unknown" in str(err) or "No such file" in str(err)
                return f"the kernel has no {kind}" if unknown else str(err)
        return None
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _latency_commands(port: int, delay_ms: int, jitter_ms: int) -> list[tuple[str, list[str]]]:
    # prio's default priomap uses bands 0-2; the fourth is only reached through the filter.
    priomap = ["1", "2", "2", "2", "1", "2", "0", "0", "1", "1", "1", "1", "1", "1", "1", "1"]
    root = ["qdisc", "add", "dev", "lo", "root", "handle", _QDISC, "prio", "bands", "4"]
    netem = ["qdisc", "add", "dev", "lo", "parent", f"{_QDISC}4", "handle", "5a6b:", "netem"]
    match = ["filter", "add", "dev", "lo", "parent", _QDISC, "protocol", "ip", "prio", "1"]
    return [
        ("sch_prio", [*root, "priomap", *priomap]),
        ("sch_netem", [*netem, "delay", f"{delay_ms}ms", f"{jitter_ms}ms"]),
        ("cls_u32", [*match, "u32", "match", "ip", "dport", str(port), "0xffff",
                     "flowid", f"{_QDISC}4"]),
    ]  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def chaos_tables() -> list[str]:
    """The partition tables in the ruleset now, ours or a crashed run's."""
    listed = json.loads(run_tool("nft", "-j", "list", "tables"))["nftables"]
    return [
        t["table"]["name"]
        for t in listed
        if "table" in t and t["table"]["family"] == "inet" and _TABLE.match(t["table"]["name"])
    ]


def remove_leftovers(also_own: bool = False) -> list[str]:
    """Delete what runs no longer alive left behind (with `also_own`, ours too): each
    partition table whose pid is dead, and the latency qdisc if its owner is."""
    removed = []
    for name in chaos_tables() if nft_unusable() is None else []:
        match = _TABLE.match(name)
        assert match is not None
        pid = int(match.group(1))
        if not alive(pid) or (also_own and pid == os.getpid()):
            run_tool("nft", "delete", "table", "inet", name)
            removed.append(f"nft table inet {name}")
    try:
        owner = int(_QDISC_OWNER.read_text())
    except (OSError, ValueError):
        owner = None
    if owner is not None and (not alive(owner) or (also_own and owner == os.getpid())):
        if _remove_qdisc():
            removed.append(f"tc qdisc {_QDISC} on lo")
        _QDISC_OWNER.unlink(missing_ok=True)
    return removed


def _qdisc_present() -> bool:
    shown = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True)
    return f" {_QDISC} root" in shown.stdout


def _remove_qdisc() -> bool:
    if not _qdisc_present():
        return False
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True, check=False)
    return True


def established_peers(port: int) -> set[int]:
    """The client ports of the connections open to `port` on this machine now."""
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    peers.add(int(remote.rsplit(":", 1)[1], 16))
    return peers


class Partition:
    """`with Partition(port) as cut:` drops tcp to and from `port` on lo until the block
    ends, however it ends; afterwards `cut.detail` says what was dropped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.table = f"{TABLE_PREFIX}{os.getpid()}_{next(_serial)}"
        self.detail = ""

    def __enter__(self) -> Partition:
        self._open = established_peers(self.port)
        run_tool("nft", "-f", "-", script=f"""
            table inet {self.table} {{
              set clients {{ type inet_service; flags dynamic; size 65535; }}
              chain input {{
                type filter hook input priority -10; policy accept;
                iif "lo" tcp dport {self.port} update @clients {{ tcp sport }} counter drop
                iif "lo" tcp sport {self.port} counter drop
              }}
            }}""")  # fmt: skip
        self._since = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            packets, clients = self._dropped()
        finally:
            run_tool("nft", "delete", "table", "inet", self.table)
        lasted = time.monotonic() - self._since
        hung, new = len(clients & self._open), len(clients - self._open)
        self.detail = (
            f"tcp port {self.port} on lo dropped for {lasted:.1f} s: {packets} packets; "
            f"{hung} open connection(s) hung, {new} new one(s) got no answer"
        )

    def _dropped(self) -> tuple[int, set[int]]:
        listed = json.loads(run_tool("nft", "-j", "list", "table", "inet", self.table))["nftables"]
        packets, clients = 0, set()
        for item in listed:
            for expr in item.get("rule", {}).get("expr", []):
                packets += expr.get("counter", {}).get("packets", 0)
            clients.update(item.get("set", {}).get("elem", []))
        return packets, clients


class Latency:
    """`with Latency(port, 200, 50):` delays each packet sent to `port` on lo by
    200 ± 50 ms (netem) until the block ends, however it ends."""

    def __init__(self, port: int, delay_ms: int = 200, jitter_ms: int = 50) -> None:
        self.port, self.delay_ms, self.jitter_ms = port, delay_ms, jitter_ms
        self.detail = ""

    def __enter__(self) -> Latency:
        if _qdisc_present():
            raise NetFaultError(f"lo already has the qdisc {_QDISC}: another run's latency")
        _QDISC_OWNER.write_text(str(os.getpid()))
        try:
            for _, argv in _latency_commands(self.port, self.delay_ms, self.jitter_ms):
                run_tool("tc", *argv)
        except BaseException:
            self._undo()
            raise
        self._since = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._undo()
        self.detail = (
            f"tcp to port {self.port} on lo delayed {self.delay_ms} ± {self.jitter_ms} ms "
            f"(netem) for {time.monotonic() - self._since:.1f} s"
        )

    def _undo(self) -> None:
        _remove_qdisc()
        _QDISC_OWNER.unlink(missing_ok=True)
