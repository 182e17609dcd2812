"""The link's propagation delay, held in user space: this kernel has no ``sch_netem``
(``CONFIG_NET_SCH_NETEM`` is not set), so the packets a namespace receives on its veth are
queued to this process through NFQUEUE (an iptables rule in ``mangle PREROUTING``) and accepted
again ``delay`` seconds after they arrived. The kernel keeps the packets; only their ids travel
(``NFQNL_COPY_META``), and GSO packets are queued whole (``NFQA_CFG_F_GSO``), so a few thousand
verdicts a second carry a gigabit. The delay is constant, so packets leave in arrival order and
one batch verdict releases every packet that is due.

Run inside a namespace: ``ip netns exec NS python -m dynasoar.experiment.delay QUEUE SECONDS``;
it prints ``delaying queue N`` once bound. Each line on its stdin sets a new delay (seconds,
for packets arriving from then on); it exits at the end of its stdin (its parent is gone) or on
SIGTERM."""

from __future__ import annotations

import argparse
import collections
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT_BATCH = 3
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_GSO = 1 << 2
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
QUEUE_MAXLEN = 65536
_HEADER = struct.Struct("=IHHII")


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(
    kind: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0
) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + attrs
    return (
        _HEADER.pack(_HEADER.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0)
        + body
    )


def config_messages(queue: int) -> list[bytes]:
    """Bind the queue; copy only metadata; take GSO packets whole; a deep queue."""
    cmd = _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, 0))
    params = _attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META))
    maxlen = _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN))
    flags = _attr(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_GSO)) + _attr(
        NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_GSO)
    )
    ack = NLM_F_REQUEST | NLM_F_ACK
    return [
        _message(NFQNL_MSG_CONFIG, queue, cmd, ack, 1),
        _message(NFQNL_MSG_CONFIG, queue, params + maxlen, ack, 2),
        _message(NFQNL_MSG_CONFIG, queue, flags, ack, 3),
    ]


def verdict_batch(queue: int, last_id: int) -> bytes:
    """Accept every queued packet whose id is at most ``last_id``."""
    return _message(
        NFQNL_MSG_VERDICT_BATCH,
        queue,
        _attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last_id)),
    )


def packet_ids(data: bytes) -> tuple[list[int], list[int]]:
    """The packet ids in a datagram of netlink messages, and the error codes of any acks."""
    ids: list[int] = []
    errors: list[int] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if kind == NLMSG_ERROR:
            errors.append(-struct.unpack_from("=i", data, offset + _HEADER.size)[0])
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            position = offset + _HEADER.size + 4  # past nfgenmsg
            end = offset + length
            while position + 4 <= end:
                attr_length, attr_kind = struct.unpack_from("=HH", data, position)
                if attr_length < 4:
                    break
                if attr_kind & 0x3FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from(">I", data, position + 4)[0])
                    break
                position += attr_length + (-attr_length % 4)
        offset += length + (-length % 4)
    return ids, errors


def open_queue(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    for message in config_messages(queue):
        sock.send(message)
        _ids, errors = packet_ids(sock.recv(65536))
        if any(errors):
            code = next(e for e in errors if e)
            raise OSError(
                code, f"NFQUEUE {queue} config refused: {errno.errorcode.get(code, code)}"
            )
    sock.setblocking(False)
    return sock


def run(queue: int, delay: float) -> None:
    sock = open_queue(queue)
    control = sys.stdin.fileno()
    partial = b""
    pending: collections.deque[tuple[float, int]] = collections.deque()
    print(f"delaying queue {queue} by {delay * 1000:.3f} ms", flush=True)
    while True:
        now = time.monotonic()
        # select: its timeout has microseconds (poll and epoll round up to whole milliseconds)
        timeout = None if not pending else max(0.0, pending[0][0] - now)
        readable = select.select([sock, control], [], [], timeout)[0]
        if control in readable:
            chunk = os.read(control, 4096)
            if not chunk:
                return
            *lines, partial = (partial + chunk).split(b"\n")
            if lines:
                delay = float(lines[-1])
        if sock in readable:
            arrived = time.monotonic()
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    break
                ids, _errors = packet_ids(data)
                pending.extend((arrived + delay, i) for i in ids)
        now = time.monotonic()
        last = -1
        while pending and pending[0][0] <= now:
            last = pending.popleft()[1]
        if last >= 0:
            sock.send(verdict_batch(queue, last))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynasoar.experiment.delay")
    parser.add_argument("queue", type=int)
    parser.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args.queue, args.seconds)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
