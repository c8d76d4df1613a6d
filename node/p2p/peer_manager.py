"""Peer links over asyncio TCP streams: one authenticated, encrypted link per validator pair.

The :class:`PeerManager` listens, dials every known peer, runs the handshake
(:mod:`node.p2p.handshake`), and then moves opaque canonical messages in both directions.
It never interprets a message: the node hands it objects and gets objects back through
``on_message(sender_pubkey, msg)``.

Per remote peer (one :class:`_Peer`, for the life of the manager):

* a bounded send queue: :meth:`PeerManager.send` only appends and never awaits; when the
  queue is over its message or byte limit the *oldest* messages are dropped (and counted),
  so a slow or dead peer costs memory up to the limit and never blocks anybody else;
* one dial loop: dials when not connected, with exponential backoff and jitter.

Per link (one :class:`_Link`, for the life of one TCP connection): a reader task (frames
in order to ``on_message``; an awaitable result is awaited, so delivery order per peer is
the send order), a writer task that drains the peer's queue, and a keepalive task that
sends a ping every ``ping_interval`` and closes the link when a read has waited
``dead_timeout`` (a watchdog: arming an ``asyncio.timeout`` around every read cost more
than the read). A link on which nothing arrives for ``dead_timeout``, or whose writes stall
for ``write_timeout``, is closed. The writer waits on the socket (under ``write_timeout``)
only when a write left a backlog or failed. Delivery is at most once: messages
queued while a peer is down are sent when it comes back; a message already handed to a
link that then dies is lost, and the layers above re-gossip.

Simultaneous dials: both links may complete. The link dialled by the lower public key
wins on both ends; a new link from the same dialer as the current one replaces it (the
dialer reconnected). Both ends apply the same rule and keep the same TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nacl.signing import SigningKey

from consensus import canonical
from node.defaults import RUNTIME_CHECKS
from node.log_throttle import LogThrottle
from node.p2p.frames import DEFAULT_MAX_FRAME, HEADER_SIZE, FrameError, FrameOpener, FrameSealer
from node.p2p.handshake import (
    HELLO_SIZE,
    Handshake,
    HandshakeError,
    HandshakeResult,
    describe_runtime,
    local_runtime,
)

logger = logging.getLogger(__name__)

OnMessage = Callable[[bytes, Any], Awaitable[Any] | None]
"""``on_message(sender_pubkey, msg)``; may be a plain function or a coroutine function."""

PeerAddress = tuple[str, str, int]
"""``(name, host, port)``; port 0 means "do not dial, wait for it to dial us"."""

_CONTROL_MAX = 16

REFUSAL_REASONS = (
    # the peer's handshake (node/p2p/handshake.py)
    "bad_hello", "bad_auth", "version", "chain_id", "bad_signature", "self", "unknown_key",
    "genesis", "runtime",
    # the link (this module)
    "timeout", "closed", "refused", "unexpected_peer", "too_many_from_address",
    "too_many_handshakes", "duplicate",
)
"""Every reason a connection is refused for: ``/metrics`` declares a counter for each, so
an alert on one (a genesis or runtime mismatch after an upgrade) has its series from the
start (tests/node/test_p2p_refusal_reasons.py checks the list against the code)."""


@dataclass(frozen=True)
class P2PConfig:
    """Transport limits and timings (seconds). The defaults suit a LAN/WAN validator set."""

    max_frame: int = DEFAULT_MAX_FRAME
    handshake_timeout: float = 5.0
    handshake_step_timeout: float = 3.0
    dial_timeout: float = 3.0
    ping_interval: float = 2.0
    dead_timeout: float = 10.0
    write_timeout: float = 10.0
    queue_max_messages: int = 1024
    queue_max_bytes: int = 64 * 1024 * 1024
    backoff_base: float = 0.1
    backoff_cap: float = 3.0
    stable_after: float = 5.0
    max_pending_handshakes: int = 32
    max_pending_per_address: int = 8
    """Inbound handshakes under way from one source address. With it, and with a
    validator's own address exempt from the global cap above, a stranger holding idle
    sockets cannot keep the validators from linking (a review held 40 against each node,
    reopening each one as it was closed: two validators never linked in 40 s)."""
    refusal_log_interval: float = 10.0
    """At most one log line per refusal reason this often (the rest are counted)."""
    runtime_check: str = "refuse"
    """A validator naming another Python minor version or Unicode version in its handshake:
    ``refuse`` the link, or ``warn`` and connect (node/p2p/handshake.py says why)."""

    def validate(self) -> None:
        """Raise ValueError on a configuration that cannot work."""
        if self.max_frame < 1024:
            raise ValueError("max_frame must be at least 1024 bytes")
        if self.queue_max_messages < 1 or self.queue_max_bytes < 1:
            raise ValueError("queue limits must be positive")
        if self.dead_timeout <= self.ping_interval:
            raise ValueError("dead_timeout must be longer than ping_interval")
        for name in (
            "handshake_timeout",
            "handshake_step_timeout",
            "dial_timeout",
            "ping_interval",
            "write_timeout",
            "backoff_base",
            "backoff_cap",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_pending_handshakes < 1 or self.max_pending_per_address < 1:
            raise ValueError("max_pending_handshakes and _per_address must be at least 1")
        if self.runtime_check not in RUNTIME_CHECKS:
            raise ValueError(f"runtime_check must be one of {', '.join(RUNTIME_CHECKS)}")


def compute_backoff(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before the next dial: ``min(cap, base * 2**failures)``, jittered to 50-100%."""
    ceiling = min(cap, base * float(2 ** min(failures, 32)))
    return ceiling * (0.5 + 0.5 * rng.random())


@dataclass
class PeerStats:
    """Counters for one remote peer, summed over all its links (for ``/metrics``)."""

    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    messages_dropped: int = 0
    connects: int = 0
    disconnects: int = 0
    dial_failures: int = 0


class _Link:
    """One authenticated TCP connection to a peer."""

    def __init__(
        self,
        peer_pubkey: bytes,
        dialer: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        result: HandshakeResult,
    ) -> None:
        self.peer_pubkey = peer_pubkey
        self.dialer = dialer
        self.reader = reader
        self.writer = writer
        self.sealer: FrameSealer = result.sealer
        self.opener: FrameOpener = result.opener
        self.peer_runtime = result.peer_runtime
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.opened_at = time.monotonic()
        self.read_since: float | None = None
        """When the read in progress started (None between reads): the watchdog's clock."""


@dataclass(eq=False)
class _Peer:
    """Everything we keep about one remote validator, across reconnects."""

    pubkey: bytes
    name: str
    host: str
    port: int
    queue: deque[bytes] = field(default_factory=deque)
    queue_bytes: int = 0
    control: deque[bytes] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    link: _Link | None = None
    failures: int = 0
    next_dial_at: float = 0.0
    dropping: bool = False
    stats: PeerStats = field(default_factory=PeerStats)
    runtime: dict[str, str] | None = None
    """What the peer named in its last handshake (None: never linked, or an older build)."""


_PING = canonical.encode({"t": "ping"})
_PONG = canonical.encode({"t": "pong"})


def encode_message(msg: Any) -> bytes:
    """The plaintext of one application frame: ``canonical({"t": "msg", "b": msg})``."""
    return canonical.encode({"t": "msg", "b": msg})


def _short(pubkey: bytes) -> str:
    return pubkey.hex()[:12]


class PeerManager:
    """The node's transport: see the module docstring for the guarantees."""

    def __init__(
        self,
        chain_id: str,
        node_key: SigningKey,
        allowed: Mapping[bytes, PeerAddress],
        host: str = "127.0.0.1",
        port: int = 0,
        on_message: OnMessage | None = None,
        *,
        config: P2PConfig | None = None,
        rng: random.Random | None = None,
        genesis_hash: bytes | None = None,
        runtime: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config if config is not None else P2PConfig()
        self.config.validate()
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        """Named in our handshake and compared with the peer's (node/p2p/handshake.py)."""
        self.runtime = dict(runtime) if runtime is not None else local_runtime()
        """Ours, named in our handshake (a test passes another to play an upgraded peer)."""
        self.node_key = node_key
        self.pubkey = bytes(node_key.verify_key)
        self.host = host
        self.port = port
        self.on_message = on_message
        self.on_connect: Callable[[bytes], None] | None = None
        """Called with a peer's public key each time a link to it is installed (the
        driver tells a newly linked peer its height at once)."""
        self._rng = rng if rng is not None else random.Random()
        self._allowed = frozenset(bytes(k) for k in allowed)
        self._peers: dict[bytes, _Peer] = {}
        for key, (name, peer_host, peer_port) in allowed.items():
            if bytes(key) != self.pubkey:
                self._peers[bytes(key)] = _Peer(bytes(key), name, peer_host, int(peer_port))
        self.rejected: Counter[str] = Counter()
        """Connections refused during the handshake (or as duplicates), by reason."""
        self.closed: Counter[str] = Counter()
        """Established links closed, by reason."""
        self._server: asyncio.Server | None = None
        self._dial_tasks: list[asyncio.Task[None]] = []
        self._inbound_tasks: set[asyncio.Task[Any]] = set()
        self._pending_handshakes = 0
        self._pending_by_address: Counter[str] = Counter()
        self._refusal_lines = LogThrottle(self.config.refusal_log_interval)
        # Links made and closed, one line per peer (and close reason) per interval: a
        # validator's key can relink as often as it likes, and each link logged two lines
        # (a review's storm: 1 MB of log in 10 s per node, ~8 GB a day).
        self._link_lines = LogThrottle(self.config.refusal_log_interval)
        self._running = False

    # ------------------------------------------------------------------ public API

    async def start(self) -> None:
        """Listen on ``host:port`` (``self.port`` is the bound port after this) and dial."""
        if self._running:
            raise RuntimeError("PeerManager already started")
        self._server = await asyncio.start_server(self._on_inbound, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._running = True
        for peer in self._peers.values():
            peer.changed.set()
            task = asyncio.create_task(self._dial_loop(peer), name=f"p2p-dial-{peer.name}")
            self._dial_tasks.append(task)
        logger.info("p2p listening on %s:%d as %s", self.host, self.port, _short(self.pubkey))

    async def stop(self) -> None:
        """Stop listening and dialing, close every link; queued messages are discarded."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        tasks: list[asyncio.Task[Any]] = [*self._dial_tasks, *self._inbound_tasks]
        for task in tasks:
            task.cancel()
        for peer in self._peers.values():
            if peer.link is not None:
                tasks.extend(peer.link.tasks)
                self._close_link(peer, peer.link, "shutdown")
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dial_tasks.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        logger.info("p2p stopped (%s)", _short(self.pubkey))

    def send(self, pubkey: bytes, msg: Any) -> None:
        """Queue ``msg`` for one peer; never blocks.

        Raises KeyError for a key not in the allowed set, ``canonical.CanonicalError`` for
        an object that cannot be encoded and ValueError for one over ``max_frame``.
        """
        peer = self._peers.get(bytes(pubkey))
        if peer is None:
            raise KeyError(f"unknown peer {bytes(pubkey).hex()}")
        self._enqueue(peer, self._encode(msg))

    def broadcast(self, msg: Any) -> int:
        """Queue ``msg`` for every peer (encoded once); returns the number of peers."""
        data = self._encode(msg)
        for peer in self._peers.values():
            self._enqueue(peer, data)
        return len(self._peers)

    def connected_peers(self) -> list[bytes]:
        """Public keys of peers with a live authenticated link, sorted."""
        return sorted(p.pubkey for p in self._peers.values() if p.link is not None)

    def set_address(self, pubkey: bytes, host: str, port: int) -> None:
        """Change where a peer is dialled (port 0: do not dial); it is retried at once."""
        peer = self._peers[bytes(pubkey)]
        peer.host, peer.port = host, int(port)
        peer.failures, peer.next_dial_at = 0, 0.0
        peer.changed.set()

    def peer_stats(self, pubkey: bytes) -> PeerStats:
        """The live counters of one peer."""
        return self._peers[bytes(pubkey)].stats

    def other_runtimes(self) -> dict[bytes, dict[str, str]]:
        """Linked peers that named a runtime other than ours (only under ``warn``)."""
        return {peer.pubkey: peer.runtime for peer in self._peers.values()
                if peer.link is not None and peer.runtime is not None
                and peer.runtime != self.runtime}

    def link_info(self, pubkey: bytes) -> dict[str, Any] | None:
        """Details of the live link to ``pubkey`` (None when not connected)."""
        peer = self._peers[bytes(pubkey)]
        link = peer.link
        if link is None:
            return None
        return {
            "outbound": link.dialer == self.pubkey,
            "dialer": link.dialer,
            "local": link.writer.get_extra_info("sockname"),
            "remote": link.writer.get_extra_info("peername"),
            "age": time.monotonic() - link.opened_at,
        }

    def stats(self) -> dict[str, Any]:
        """Every counter, as plain data: per peer (by hex key), rejections, closes."""
        peers: dict[str, Any] = {}
        for peer in self._peers.values():
            peers[peer.pubkey.hex()] = {
                "name": peer.name,
                "connected": peer.link is not None,
                "queued": len(peer.queue),
                "queued_bytes": peer.queue_bytes,
                "runtime": peer.runtime,
                **asdict(peer.stats),
            }
        return {"peers": peers, "rejected": dict(self.rejected), "closed": dict(self.closed)}

    # ------------------------------------------------------------------ sending

    def _encode(self, msg: Any) -> bytes:
        data = encode_message(msg)
        if len(data) > self.config.max_frame:
            raise ValueError(f"message is {len(data)} bytes, max_frame {self.config.max_frame}")
        return data

    def _enqueue(self, peer: _Peer, data: bytes) -> None:
        peer.queue.append(data)
        peer.queue_bytes += len(data)
        cfg = self.config
        while len(peer.queue) > 1 and (
            len(peer.queue) > cfg.queue_max_messages or peer.queue_bytes > cfg.queue_max_bytes
        ):
            dropped = peer.queue.popleft()
            peer.queue_bytes -= len(dropped)
            peer.stats.messages_dropped += 1
            if not peer.dropping:
                peer.dropping = True
                logger.warning("p2p send queue to %s full: dropping oldest messages", peer.name)
        peer.wakeup.set()

    def _enqueue_control(self, peer: _Peer, data: bytes) -> None:
        if len(peer.control) < _CONTROL_MAX:
            peer.control.append(data)
            peer.wakeup.set()

    # ------------------------------------------------------------------ handshake

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, expected: bytes | None
    ) -> HandshakeResult:
        """Run both sides' handshake steps, each under a deadline, inside an overall one."""
        hs = Handshake(
            chain_id=self.chain_id,
            node_key=self.node_key,
            allowed=self._allowed,
            max_frame=self.config.max_frame,
            genesis=self.genesis_hash,
            runtime=self.runtime,
            refuse_other_runtime=self.config.runtime_check == "refuse",
        )
        step = self.config.handshake_step_timeout
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                writer.write(hs.hello())
                async with asyncio.timeout(step):
                    await writer.drain()
                async with asyncio.timeout(step):
                    hello = await reader.readexactly(HELLO_SIZE)
                auth = hs.receive_hello(hello)
                # The dialler authenticates first; the answering end sends its own auth only
                # once the dialler's passed every check. A stranger thus never completes a
                # handshake, not even from its own side, and learns nothing signed by us.
                answering = expected is None
                if not answering:
                    writer.write(auth)
                    async with asyncio.timeout(step):
                        await writer.drain()
                try:
                    async with asyncio.timeout(step):
                        header = await reader.readexactly(HEADER_SIZE)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if answering:
                        raise
                    raise HandshakeError("refused", "the peer closed the connection on our "
                                         "auth: it does not accept our node key or chain id "
                                         "(compare genesis files)") from None
                length = hs.auth_body_length(header)
                async with asyncio.timeout(step):
                    body = await reader.readexactly(length)
                result = hs.receive_auth(header, body)
                if answering:
                    writer.write(auth)
                    async with asyncio.timeout(step):
                        await writer.drain()
        except TimeoutError:
            raise HandshakeError("timeout", "handshake step took too long") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HandshakeError("closed", f"connection lost during handshake: {exc!r}") from None
        if expected is not None and result.peer_pubkey != expected:
            raise HandshakeError(
                "unexpected_peer",
                f"dialled {expected.hex()} but {result.peer_pubkey.hex()} answered",
            )
        return result

    def _reject(self, reason: str, where: Any, detail: str, outbound: bool) -> None:
        self.rejected[reason] += 1
        direction = "outbound" if outbound else "inbound"
        level = logging.DEBUG if reason == "closed" and outbound else logging.WARNING
        if level == logging.WARNING:
            # One line per reason per interval (the counters keep every one).
            muted = self._refusal_lines.allow((reason, direction))
            if muted is None:
                return
            if muted:
                detail = f"{detail}; {muted} more refused for this since the last line"
        logger.log(level, "p2p refused %s connection %s: %s (%s)", direction, where, reason, detail)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound_tasks.add(task)
        where = writer.get_extra_info("peername")
        try:
            if not self._running:
                writer.transport.abort()
                return
            address = where[0] if isinstance(where, tuple) and where else str(where)
            if self._pending_by_address[address] >= self.config.max_pending_per_address:
                self._reject("too_many_from_address", where, "address slots full",
                             outbound=False)
                writer.transport.abort()
                return
            if (self._pending_handshakes >= self.config.max_pending_handshakes
                    and all(peer.host != address for peer in self._peers.values())):
                self._reject("too_many_handshakes", where, "slots full", outbound=False)
                writer.transport.abort()
                return
            self._pending_handshakes += 1
            self._pending_by_address[address] += 1
            try:
                result = await self._handshake(reader, writer, None)
            except HandshakeError as exc:
                self._reject(exc.reason, where, exc.detail, outbound=False)
                writer.transport.abort()
                return
            except BaseException:
                writer.transport.abort()
                raise
            finally:
                self._pending_handshakes -= 1
                self._pending_by_address[address] -= 1
                if not self._pending_by_address[address]:
                    del self._pending_by_address[address]
            peer = self._peers[result.peer_pubkey]
            self._register(peer, _Link(peer.pubkey, peer.pubkey, reader, writer, result))
        finally:
            if task is not None:
                self._inbound_tasks.discard(task)

    async def _dial(self, peer: _Peer) -> None:
        async with asyncio.timeout(self.config.dial_timeout):
            reader, writer = await asyncio.open_connection(peer.host, peer.port)
        try:
            result = await self._handshake(reader, writer, peer.pubkey)
        except HandshakeError as exc:
            self._reject(exc.reason, f"to {peer.name}", exc.detail, outbound=True)
            writer.transport.abort()
            raise
        except BaseException:
            writer.transport.abort()
            raise
        self._register(peer, _Link(peer.pubkey, self.pubkey, reader, writer, result))

    async def _dial_loop(self, peer: _Peer) -> None:
        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation that
        # races with the inner await finishing, which would make stop() hang.
        while self._running:
            peer.changed.clear()
            if peer.link is not None or not peer.port:
                await peer.changed.wait()
                continue
            delay = peer.next_dial_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await peer.changed.wait()
                continue
            try:
                await self._dial(peer)
            except (OSError, TimeoutError, HandshakeError) as exc:
                peer.stats.dial_failures += 1
                peer.failures += 1
                peer.next_dial_at = time.monotonic() + self._backoff(peer.failures)
                logger.debug("p2p dial to %s failed (%r), retry later", peer.name, exc)

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        return compute_backoff(failures, cfg.backoff_base, cfg.backoff_cap, self._rng)

    # ------------------------------------------------------------------ links

    def _register(self, peer: _Peer, link: _Link) -> None:
        """Install ``link`` as the peer's link unless the tie-break says otherwise."""
        if not self._running:
            link.writer.transport.abort()
            return
        existing = peer.link
        if existing is not None:
            winner = min(self.pubkey, peer.pubkey)
            if link.dialer != existing.dialer and link.dialer != winner:
                self.rejected["duplicate"] += 1
                logger.debug("p2p dropped duplicate link with %s (tie-break)", peer.name)
                link.writer.transport.abort()
                return
            self._close_link(peer, existing, "replaced")
        peer.link = link
        peer.runtime = link.peer_runtime
        peer.stats.connects += 1
        peer.changed.set()
        link.tasks = [
            asyncio.create_task(self._read_loop(peer, link), name=f"p2p-read-{peer.name}"),
            asyncio.create_task(self._write_loop(peer, link), name=f"p2p-write-{peer.name}"),
            asyncio.create_task(self._keepalive_loop(peer, link), name=f"p2p-ping-{peer.name}"),
        ]
        peer.wakeup.set()
        muted = self._link_lines.allow((peer.pubkey, "connected"))
        if muted is not None:
            logger.info(
                "p2p connected to %s (%s, %s)%s",
                peer.name,
                _short(peer.pubkey),
                "outbound" if link.dialer == self.pubkey else "inbound",
                f"; {muted} more links since the last line" if muted else "",
            )
        if peer.runtime is not None and peer.runtime != self.runtime:
            logger.warning(
                "p2p peer %s runs %s, this node %s: receipts can differ between them and "
                "halt the network; run one Python minor version on every validator "
                "(docs/operations.md)", peer.name, describe_runtime(peer.runtime),
                describe_runtime(self.runtime))
        if self.on_connect is not None:
            try:
                self.on_connect(peer.pubkey)
            except Exception:
                logger.exception("p2p on_connect handler failed for %s", peer.name)

    def _close_link(self, peer: _Peer, link: _Link, reason: str) -> None:
        if link.closed:
            return
        link.closed = True
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()
        link.writer.transport.abort()
        self.closed[reason] += 1
        if peer.link is link:
            peer.link = None
            peer.control.clear()
            peer.stats.disconnects += 1
            lived = time.monotonic() - link.opened_at
            peer.failures = 0 if lived >= self.config.stable_after else peer.failures + 1
            peer.next_dial_at = time.monotonic() + self._backoff(peer.failures)
            peer.changed.set()
        muted = self._link_lines.allow((peer.pubkey, "closed", reason))
        if muted is None:
            return
        level = logging.INFO if reason in {"eof", "shutdown", "replaced"} else logging.WARNING
        logger.log(level, "p2p link to %s closed: %s%s", peer.name, reason,
                   f"; {muted} more since the last line" if muted else "")

    async def _read_loop(self, peer: _Peer, link: _Link) -> None:
        """Frames in, in order. A read that waits ``dead_timeout`` is ended by the watchdog
        in :meth:`_keepalive_loop`, which sees ``link.read_since``."""
        reason = "eof"
        reader = link.reader
        opener = link.opener
        stats = peer.stats
        monotonic = time.monotonic
        try:
            while True:
                link.read_since = monotonic()
                header = await reader.readexactly(HEADER_SIZE)
                length = opener.body_length(header)
                link.read_since = monotonic()
                body = await reader.readexactly(length)
                link.read_since = None
                plaintext = opener.open(header, body)
                stats.frames_in += 1
                stats.bytes_in += HEADER_SIZE + length
                await self._on_frame(peer, plaintext)
        except (asyncio.IncompleteReadError, ConnectionError):
            reason = "eof"
        except FrameError as exc:
            reason = exc.reason
            logger.warning("p2p bad frame from %s: %s", peer.name, exc)
        except canonical.CanonicalError as exc:
            reason = "bad_message"
            logger.warning("p2p undecodable message from %s: %s", peer.name, exc)
        finally:
            if not link.closed:
                self._close_link(peer, link, reason)

    async def _on_frame(self, peer: _Peer, plaintext: bytes) -> None:
        # No peer sends more than a canonical message (its encoder refuses to): a larger
        # frame is refused here as it always was, now by name rather than by the re-encode.
        envelope = canonical.decode(
            plaintext, max_bytes=min(self.config.max_frame, canonical.MAX_MESSAGE_BYTES))
        kind = envelope.get("t") if isinstance(envelope, dict) else None
        if kind == "msg" and "b" in envelope:
            peer.stats.messages_in += 1
            await self._deliver(peer, envelope["b"])
        elif kind == "ping":
            self._enqueue_control(peer, _PONG)
        elif kind != "pong":
            raise canonical.CanonicalError(f"unknown envelope {kind!r}")

    async def _deliver(self, peer: _Peer, msg: Any) -> None:
        if self.on_message is None:
            return
        try:
            result = self.on_message(peer.pubkey, msg)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("p2p on_message handler failed for a message from %s", peer.name)

    async def _write_loop(self, peer: _Peer, link: _Link) -> None:
        """Seal and write queued frames one at a time, control frames first.

        ``drain`` (under ``write_timeout``) only when a write left a backlog or the
        transport is closing: a write that went straight to the socket has nothing to wait
        for, and arming a timeout per frame was a measurable share of a small height's CPU.
        One frame per write keeps a failed link from swallowing more than one message: the
        rest stay queued for the next link (frames batched into one write were lost
        together when a link lost the simultaneous-dial tie-break).
        """
        reason = "eof"
        writer = link.writer
        transport = writer.transport
        seal = link.sealer.seal
        stats = peer.stats
        try:
            while True:
                if transport.is_closing():
                    # Not awaited on every frame any more, so a closed transport is seen
                    # here: stop before taking a message, which stays queued for the next
                    # link (and uvloop raises on a write to a closed handle).
                    break
                if peer.control:
                    data, is_message = peer.control.popleft(), False
                elif peer.queue:
                    data, is_message = peer.queue.popleft(), True
                    peer.queue_bytes -= len(data)
                    if not peer.queue:
                        peer.dropping = False
                else:
                    peer.wakeup.clear()
                    await peer.wakeup.wait()
                    continue
                frame = seal(data)
                writer.write(frame)
                stats.frames_out += 1
                stats.bytes_out += len(frame)
                if is_message:
                    stats.messages_out += 1
                if transport.get_write_buffer_size() or transport.is_closing():
                    async with asyncio.timeout(self.config.write_timeout):
                        await writer.drain()
        except TimeoutError:
            reason = "write_stall"
        except ConnectionError:
            reason = "eof"
        except ValueError:
            reason = "counter_exhausted"
        finally:
            if not link.closed:
                self._close_link(peer, link, reason)

    async def _keepalive_loop(self, peer: _Peer, link: _Link) -> None:
        """Ping every ``ping_interval``; close the link once a read has waited
        ``dead_timeout`` (the peer pings us as often, so a live peer is never silent)."""
        cfg = self.config
        next_ping = time.monotonic() + cfg.ping_interval
        while True:
            now = time.monotonic()
            read_since = link.read_since
            if read_since is not None and now - read_since >= cfg.dead_timeout:
                self._close_link(peer, link, "dead_peer_timeout")
                return
            if now >= next_ping:
                self._enqueue_control(peer, _PING)
                next_ping = now + cfg.ping_interval
            wake = next_ping - now
            if read_since is not None:
                wake = min(wake, read_since + cfg.dead_timeout - now)
            await asyncio.sleep(wake)
