"""Free TCP port ranges for test networks, chosen outside the kernel's ephemeral range.

Why: a node that connects to a peer gets a source port from the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default). A test network whose
listen ports were picked inside that range can find one of them taken, between the probe and
the bind, by an outgoing connection of a node that is already running - the node then exits
with "address already in use" (seen once in CI). Ports below the ephemeral range are only
ever taken by something that binds them on purpose.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

LOWEST = 10000
RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range(path: Path = RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range; Linux's default when the file cannot be read."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def candidate_window(count: int, ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(start, stop)`` such that any base in ``range(start, stop)`` keeps
    ``base .. base+count-1`` outside the ephemeral range."""
    low, high = ephemeral if ephemeral is not None else ephemeral_range()
    if low - count > LOWEST:
        return LOWEST, low - count + 1
    return high + 1, 65536 - count + 1  # a machine whose ephemeral range starts very low


def range_is_free(base: int, count: int) -> bool:
    """Bind every port of ``base .. base+count-1`` at once (SO_REUSEADDR, as the node does)."""
    socks: list[socket.socket] = []
    try:
        for port in range(base, base + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()
    return True


def free_base_port(count: int, *, step: int = 1) -> int:
    """A base port such that ``base .. base+count-1`` are free now and not ephemeral."""
    start, stop = candidate_window(count)
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        base = rng.randrange(start, stop, step)
        if range_is_free(base, count):
            return base
    raise RuntimeError("no free port range found below the ephemeral range")
