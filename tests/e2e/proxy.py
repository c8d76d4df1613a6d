"""A partitioning TCP proxy in front of every node's p2p port (test-only).

Design. Peers dial the address that genesis lists for a validator, and genesis must be
identical on every node, so there is exactly one dial address per *destination*. We give
each node ``d`` a proxy port ``P_d`` (written into genesis ``validators[].p2p`` before the
first start) while ``d`` keeps listening on its real port ``R_d`` (its own
``config.toml``). The proxy forwards ``P_d -> R_d``.

A p2p link between two nodes is one TCP connection, dialled by either end, so it crosses
exactly one proxy: the destination's. To cut a link the proxy must also know the
*source*. The dialer's socket is ``127.0.0.1:<ephemeral port>`` and the handshake is
encrypted, so the proxy asks the kernel: it finds the socket inode of that local port in
``/proc/net/tcp`` and the node process that holds the inode in ``/proc/<pid>/fd``. The
test tells the proxy which pid is which node (``owner_of_pid``), which stays right across
restarts. With (source, destination) known for every connection, a partition is just a
set of groups: a connection is allowed only inside one group. ``partition()`` closes the
existing connections that cross groups and refuses new ones; ``heal()`` lifts it. A
connection whose source cannot be identified is refused while any partition is active
(fail closed: a partition is never leaky).

No production code knows about the proxy; the node dials genesis addresses as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable

log = logging.getLogger("jangbu.e2e.proxy")

_BUF = 64 * 1024


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    """Inode of the IPv4 TCP socket 127.0.0.1:local_port -> 127.0.0.1:remote_port."""
    want_local = f"0100007F:{local_port:04X}"
    want_remote = f"0100007F:{remote_port:04X}"
    try:
        with open("/proc/net/tcp") as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if parts[1] == want_local and parts[2] == want_remote:
                    return int(parts[9])
    except OSError:
        return None
    return None


def _pid_holding(inode: int, pids: Iterable[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                if os.readlink(f"{fd_dir}/{name}") == target:
                    return pid
    return None


class PartitionProxy:
    """One listener per destination node; all of them share the partition state."""

    def __init__(self, routes: dict[str, tuple[int, int]],
                 owner_of_pid: Callable[[], dict[int, str]], host: str = "127.0.0.1") -> None:
        self.routes = routes  # node -> (proxy_port, real_port)
        self.owner_of_pid = owner_of_pid
        self.host = host
        self.groups: list[frozenset[str]] | None = None
        self._servers: list[asyncio.Server] = []
        self._conns: set[tuple[str | None, str, asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.refused = 0
        self.cut = 0
        self.unidentified = 0

    async def start(self) -> None:
        for dst, (proxy_port, _) in self.routes.items():
            server = await asyncio.start_server(
                lambda r, w, dst=dst: self._on_client(dst, r, w), self.host, proxy_port,
                reuse_address=True)
            self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for _, _, a, b in list(self._conns):
            a.transport.abort()
            b.transport.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # --- partition control ------------------------------------------------------------------

    def allowed(self, src: str | None, dst: str) -> bool:
        if self.groups is None:
            return True
        if src is None:
            return False
        return any(src in g and dst in g for g in self.groups)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        self.groups = [frozenset(g) for g in groups]
        for conn in list(self._conns):
            src, dst, a, b = conn
            if not self.allowed(src, dst):
                self.cut += 1
                a.transport.abort()
                b.transport.abort()
                self._conns.discard(conn)

    def isolate(self, node: str) -> None:
        self.partition([[node], [n for n in self.routes if n != node]])

    def heal(self) -> None:
        self.groups = None

    # --- forwarding -------------------------------------------------------------------------

    def _identify(self, peer_port: int, dst: str) -> str | None:
        inode = _socket_inode(peer_port, self.routes[dst][0])
        if inode is None:
            return None
        owners = self.owner_of_pid()
        pid = _pid_holding(inode, owners)
        return owners.get(pid) if pid is not None else None

    async def _on_client(self, dst: str, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        src = self._identify(peer[1], dst) if peer else None
        if src is None:
            self.unidentified += 1
        if not self.allowed(src, dst):
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.routes[dst][1])
        except OSError:
            writer.transport.abort()
            return
        if not self.allowed(src, dst):  # a partition began while we were connecting
            self.refused += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        conn = (src, dst, writer, up_writer)
        self._conns.add(conn)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._conns.discard(conn)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(_BUF)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
