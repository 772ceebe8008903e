"""Hold the packets the kernel queues to us for a while, then let each go: latency
where the kernel has no netem.

    python -m chaos.packet_hold --queue 7 --delay-ms 200 --jitter-ms 50

An iptables NFQUEUE rule (chaos.held_latency) hands each matching packet to
the kernel's queue `--queue`; this process hears of it over netlink (its id,
never its bytes: copy mode META) and gives the verdict ACCEPT once the packet
has waited `delay ± jitter` ms. The kernel holds the packet meanwhile and
sends it on untouched: no socket is opened to either end, no byte copied. Each
release is kept at or after the one before, so a connection's packets leave in
the order they came, and one batch verdict lets out every packet due.

The queue is fail-open and the rule says `--queue-bypass`: a queue overflowing,
or this process gone, lets packets through rather than dropping them. On
SIGTERM or SIGINT every packet still held is let go before the queue is unbound.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque

NETLINK_NETFILTER = 12
_SUBSYS_QUEUE = 3 << 8
_PACKET, _VERDICT, _CONFIG, _VERDICT_BATCH = 0, 1, 2, 3
_CFG_CMD, _CFG_PARAMS, _CFG_QUEUE_MAXLEN, _CFG_MASK, _CFG_FLAGS = 1, 2, 3, 4, 5
_CMD_BIND, _COPY_META, _FAIL_OPEN = 1, 1, 1
_PACKET_HDR, _VERDICT_HDR = 1, 2
_ACCEPT = 1
_REQUEST, _ACK = 0x1, 0x4
_NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


class PacketQueue:
    """One NFQUEUE queue, bound on a netlink socket: packet ids in, verdicts out."""

    def __init__(self, number: int, max_held: int = 65536) -> None:
        self.number = number
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self._configure(_attr(_CFG_CMD, struct.pack("!BBH", _CMD_BIND, 0, 0)))
        self._configure(
            _attr(_CFG_PARAMS, struct.pack("!IB", 0, _COPY_META))
            + _attr(_CFG_QUEUE_MAXLEN, struct.pack("!I", max_held))
            + _attr(_CFG_MASK, struct.pack("!I", _FAIL_OPEN))
            + _attr(_CFG_FLAGS, struct.pack("!I", _FAIL_OPEN))
        )

    def _send(self, kind: int, attrs: bytes, flags: int = _REQUEST) -> None:
        self._seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.number) + attrs
        self.sock.send(
            _HEADER.pack(16 + len(body), _SUBSYS_QUEUE | kind, flags, self._seq, 0) + body
        )

    def _configure(self, attrs: bytes) -> None:
        self._send(_CONFIG, attrs, _REQUEST | _ACK)
        reply = self.sock.recv(65536)
        _, kind, _, _, _ = _HEADER.unpack_from(reply)
        (errno,) = struct.unpack_from("=i", reply, 16) if kind == _NLMSG_ERROR else (0,)
        if errno:
            raise OSError(-errno, f"NFQUEUE {self.number}: {os.strerror(-errno)}")

    def packet_ids(self) -> list[int]:
        """The ids of the packets queued since the last read (waits for at least one)."""
        data = self.sock.recv(1 << 20)
        ids, at = [], 0
        while at + 16 <= len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, at)
            if length < 16:
                break
            if kind == _SUBSYS_QUEUE | _PACKET:
                ids.extend(_packet_id(data[at + 20 : at + length]))
            at += (length + 3) & ~3
        return ids

    def accept_up_to(self, packet_id: int) -> None:
        """Let every packet held with an id up to `packet_id` go on."""
        self._send(_VERDICT_BATCH, _attr(_VERDICT_HDR, struct.pack("!II", _ACCEPT, packet_id)))


def _packet_id(attrs: bytes) -> list[int]:
    at = 0
    while at + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, at)
        if length < 4:
            break
        if kind & 0x7FFF == _PACKET_HDR:
            return [struct.unpack_from("!I", attrs, at + 4)[0]]
        at += (length + 3) & ~3
    return []


def hold(queue: PacketQueue, delay_s: float, jitter_s: float, stopping: list[bool]) -> None:
    held: deque[tuple[float, int]] = deque()
    last = 0.0
    while not stopping:
        now = time.monotonic()
        due = None
        while held and held[0][0] <= now:
            due = held.popleft()[1]
        if due is not None:
            queue.accept_up_to(due)
        wait = max(held[0][0] - now, 0.0) if held else 0.5
        try:
            readable, _, _ = select.select([queue.sock], [], [], wait)
        except InterruptedError:
            continue
        if readable:
            now = time.monotonic()
            for packet_id in queue.packet_ids():
                last = max(now + delay_s + random.uniform(-jitter_s, jitter_s), last)
                held.append((last, packet_id))
    if held:  # stopping: nothing stays queued behind us
        queue.accept_up_to(held[-1][1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.packet_hold", description=__doc__)
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--jitter-ms", type=int, default=50)
    args = parser.parse_args()
    stopping: list[bool] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    try:
        queue = PacketQueue(args.queue)
    except OSError as err:
        sys.exit(f"cannot bind NFQUEUE {args.queue} (needs root or CAP_NET_ADMIN): {err}")
    print("holding", flush=True)  # bound: the rule may send packets here now
    hold(queue, args.delay_ms / 1000, min(args.jitter_ms, args.delay_ms) / 1000, stopping)


if __name__ == "__main__":
    main()
