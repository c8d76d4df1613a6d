"""Wiring: a thin module that builds a node from its home and runs it.

Explicit dependencies, nothing global: config -> genesis -> key -> store -> contracts ->
engine -> mempool -> consensus driver -> transport -> HTTP API. ``run_node`` adds signal
handling: SIGTERM/SIGINT stop accepting requests, let the commit in flight finish, close
the transport and LevelDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import time
import unicodedata
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import plyvel
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from consensus import canonical
from consensus.types import ValidatorSet
from contracts.clearance import compiled as clearance_build
from contracts.sdk import Contract
from node import connection_watch, leveldb_stats, sigcheck, stage_cpu, state_tree
from node.api import Api
from node.block_files import BlockFileError
from node.config import NodeConfig, split_address
from node.driver import COUNTERS as DRIVER_COUNTERS
from node.driver import ConsensusDriver
from node.engine import Engine, SignatureCache, certificate_verifier
from node.events import EventBus
from node.execution import committed_member_lookup
from node.genesis import Genesis, load_genesis
from node.keys import load_key_file
from node.mempool import Mempool, MempoolLimits
from node.metrics import Metrics, python_info_name
from node.p2p.peer_manager import REFUSAL_REASONS, P2PConfig, PeerManager
from node.registry import load_contracts
from node.signer_state import FILE_NAME as GUARD_FILE
from node.signer_state import SignerStateError, SignerStateFile
from node.state_check import expected_state_root
from node.state_tree import LeafIndexError
from node.store import LedgerStore, StoreError
from node.store_open import LEVELDB_OPTIONS
from node.verified_signatures import VerifiedSignatures

log = logging.getLogger("jangbu.node")


class NodeStartError(RuntimeError):
    """The node cannot start; the message is for the operator (no traceback)."""


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        try:
            self.genesis: Genesis = load_genesis(config.genesis_file)
            self.key = load_key_file(config.node_key_file, kind="node")
        except ValueError as exc:
            raise NodeStartError(str(exc)) from None
        self.chain_id = self.genesis.chain_id
        self.pubkey = self.key.verify_key.encode()
        if self.genesis.validator_by_pubkey(self.pubkey) is None:
            # Only genesis validators link with each other, so such a node would sit alone
            # (review: it started, and only a "connected to ourselves" warning hinted why).
            names = ", ".join(v.name for v in self.genesis.validators)
            raise NodeStartError(
                f"the node key {config.node_key_file} ({self.pubkey.hex()[:16]}…) is not a "
                f"validator in {config.genesis_file} ({names}): give [node] node_key the "
                "key `jangbu network init` made for this node")
        self.contracts: dict[str, Contract] = load_contracts(self.genesis.contracts)
        self.store = LedgerStore.open(str(config.data_dir), chain_id=self.chain_id,
                                      genesis_hash=self.genesis.hash)
        try:
            self._open_state()
        except plyvel.Error as exc:
            self.store.close()
            raise NodeStartError(
                f"the data directory {config.data_dir} is damaged ({_plyvel_reason(exc)}); the "
                "node will not start on it: restore a backup or remove it and let the node "
                "resync from its peers (docs/operations.md)") from None
        except NodeStartError:
            self.store.close()
            raise
        except StoreError as exc:  # the last block missing or damaged (expected_state_root)
            self.store.close()
            raise NodeStartError(str(exc)) from None
        self.metrics = Metrics()
        self.bus = EventBus()
        # One memo of committed member records for admission and execution: the state only
        # changes by a commit, and every commit raises the height it is keyed on.
        members = committed_member_lookup(self.store.state, lambda: self.store.height)
        self.mempool = Mempool(
            chain_id=self.chain_id, contracts=self.contracts, is_committed=self.store.has_tx,
            lookup_member=members, sig_cache=self.sig_cache,
            limits=MempoolLimits.for_orgs(config.mempool_max_txs, config.mempool_max_bytes,
                                          len(self.genesis.orgs)))
        # What our mempool admitted already passed its contract check on this node.
        self.engine.is_prechecked = self.mempool.__contains__
        self.engine.committed_members = members
        guard = SignerStateFile(config.home / GUARD_FILE)
        try:
            self.driver = ConsensusDriver(guard_file=guard,
                                          genesis=self.genesis, node_key=self.key,
                                          store=self.store,
                                          engine=self.engine, mempool=self.mempool, bus=self.bus,
                                          metrics=self.metrics,
                                          sync_diffs_bytes=config.sync_diffs_bytes,
                                          speculate=config.block_announcements,
                                          vote_signatures=self.vote_signatures)
        except SignerStateError as exc:
            self.store.close()
            raise NodeStartError(str(exc)) from None
        except (OSError, plyvel.Error) as exc:  # the WAL file, or moving an old WAL into it
            guard.close()
            self.store.close()
            raise NodeStartError(
                f"the consensus WAL in {config.data_dir} cannot be opened "
                f"({type(exc).__name__}: {exc}); docs/operations.md section 5") from None
        allowed = {}
        for info in self.genesis.validators:
            host, port = split_address(info.p2p, "p2p")
            allowed[info.pubkey] = (info.name, host, port)
        self.p2p = PeerManager(self.chain_id, self.key, allowed, host=config.p2p_host,
                               port=config.p2p_port, on_message=self.driver.on_peer_message,
                               genesis_hash=self.genesis.hash,
                               config=P2PConfig(runtime_check=config.runtime_check))
        self.driver.send = self._send
        self.p2p.on_connect = self.driver.on_peer_connected
        self.driver.broadcast = self.p2p.broadcast
        self.driver.connected_peers = self.p2p.connected_peers
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None
        self._api_server: asyncio.Server | None = None
        self.api_connections = CappedConnections(None, config.max_connections)
        self._register_gauges()

    def _open_state(self) -> None:
        """Load (or create) state, build the engine, check the store against its last block."""
        if not self.store.initialised:
            tree = self.store.initialise(chain_id=self.chain_id, genesis_hash=self.genesis.hash,
                                         state=self.genesis.initial_state(),
                                         tree_cache_entries=self.config.tree_cache_entries)
        else:
            tree = self.store.load_state_tree(self.config.tree_cache_entries)
        self.vset = ValidatorSet(tuple(self.genesis.validator_pubkeys()))
        self.vote_signatures = VerifiedSignatures()  # shared by the core and the engine
        self.sig_cache = SignatureCache()
        self.engine = Engine(
            chain_id=self.chain_id, contracts=self.contracts, store=self.store, tree=tree,
            validators_hash=self.vset.hash(), validators=self.vset.validators,
            max_block_txs=self.genesis.params.max_block_txs,
            max_block_bytes=self.genesis.params.max_block_bytes,
            block_version=self.genesis.params.block_version,
            verify_commit=certificate_verifier(self.chain_id, self.vset, self.vote_signatures),
            sig_cache=self.sig_cache)
        if engine_root_mismatch(self):
            raise NodeStartError(
                "the state in the data directory does not match the last block's state_root "
                "(the genesis state's before the first block); "
                "the store is damaged: restore a backup or resync (docs/operations.md)")

    def _send(self, peer: bytes, msg: Any) -> None:
        with contextlib.suppress(KeyError):
            self.p2p.send(peer, msg)

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauge("jangbu_height", lambda: self.store.height, "last committed height")
        m.gauge("jangbu_round", lambda: self.driver.round, "current consensus round")
        m.gauge("jangbu_mempool_txs", lambda: len(self.mempool), "pending transactions")
        m.gauge("jangbu_mempool_bytes", lambda: self.mempool.size_bytes, "pending bytes")
        m.gauge("jangbu_peers", lambda: len(self.p2p.connected_peers()), "connected peers")
        m.gauge("jangbu_peers_other_runtime", lambda: len(self.p2p.other_runtimes()),
                "connected peers on another Python minor or Unicode version ([p2p] "
                "runtime_check = \"warn\"): receipts can differ, see docs/operations.md")
        for info in self.genesis.validators:
            if info.pubkey == self.pubkey:
                continue
            label = f'{{peer="{info.name}"}}'
            m.counter_from(f"jangbu_p2p_connects_total{label}",
                           lambda k=info.pubkey: self.p2p.peer_stats(k).connects,  # type: ignore[misc]
                           "links made with each peer (relinks included: the log says a "
                           "relink storm only once every 10 s)")
            m.counter_from(f"jangbu_p2p_disconnects_total{label}",
                           lambda k=info.pubkey: self.p2p.peer_stats(k).disconnects,  # type: ignore[misc]
                           "links with each peer closed")
        for reason in REFUSAL_REASONS:
            m.counter_from(f'jangbu_p2p_refused_total{{reason="{reason}"}}',
                           lambda r=reason: self.p2p.rejected[r],  # type: ignore[misc]
                           "peer connections refused, by reason (handshake checks, limits, "
                           "duplicate links): docs/operations.md section 6")
        m.gauge("jangbu_event_subscribers", lambda: self.bus.subscribers, "SSE subscribers")
        m.gauge("jangbu_api_connections", self.api_connections.open,
                "open HTTP connections (event streams included)")
        m.counter_from("jangbu_api_connections_refused_total",
                       lambda: self.api_connections.refused,
                       "HTTP connections answered 503 E_BUSY: [api] max_connections open")
        for name, help_text in DRIVER_COUNTERS.items():
            m.declare(name, help_text)
        m.gauge("jangbu_syncing", lambda: int(self.driver.syncing), "1 while block-syncing")
        # Prometheus' standard name: CPU per transaction is the figure that compares runs
        # on a machine whose speed varies (jangbu bench reads it from every node).
        m.counter_from("process_cpu_seconds_total", time.process_time,
                       "user and system CPU time of this node process, all threads")
        m.gauge(python_info_name(), lambda: 1, "the interpreter running this node (build: its "
                "sys.version on one line); jangbu bench reports it beside its figures")
        m.counter_from("jangbu_signature_checks_saved_total", lambda: self.vote_signatures.hits,
                       "consensus signatures not checked again: a block certificate's "
                       "precommits already checked as votes")
        # The key tables (node/_ed25519_keyed.c): how many checks they took off libsodium.
        m.gauge("jangbu_signature_key_tables_on", lambda: int(sigcheck.keyed_checks()),
                "1 if keys seen before are checked from their tables (JANGBU_KEYED_SIGCHECK)")
        for field, (name, help_text) in sigcheck.KEYED_METRICS.items():
            m.counter_from(name, lambda f=field: sigcheck.keyed_stats().get(f, 0),  # type: ignore[misc]
                           help_text)
        # The consensus core's refusals by reason, carried over when a sync replaces the
        # core: peers' junk shows here, not in the log (review: exported nowhere).
        for code in REJECTION_CODES:
            m.counter_from(f'jangbu_consensus_rejected_total{{code="{code}"}}',
                           lambda c=code: self.driver.consensus_rejected(c),  # type: ignore[misc]
                           "consensus messages the core refused, by reason")
        leveldb_stats.export(m, leveldb_stats.LevelDBStats(self.store.leveldb_property),
                             LEVELDB_OPTIONS["write_buffer_size"])
        m.counter_from("jangbu_speculations_used_total", lambda: self.engine.speculations_used,
                       "proposals whose execution was already done from their announcement")
        # Read on the event loop's thread (/metrics is served there): with the process's
        # figure, what the other threads (block writes, batched signature checks) used.
        m.counter_from("jangbu_event_loop_thread_cpu_seconds_total", time.thread_time,
                       "CPU time of the thread running this node's event loop")
        if stage_cpu.installed():
            for stage in stage_cpu.STAGES:
                label = f'{{stage="{stage.name}"}}'
                m.counter_from(f"jangbu_stage_cpu_seconds_total{label}",
                               stage_cpu.reader(stage.name, 0),
                               "thread CPU time spent in each stage (JANGBU_STAGE_CPU=1), "
                               "inclusive of the stages it contains")
                m.counter_from(f"jangbu_stage_calls_total{label}",
                               stage_cpu.reader(stage.name, 1),
                               "calls of each stage (JANGBU_STAGE_CPU=1)")

    def last_block_time(self) -> int:
        height, _, time_ms = self.engine.tip()
        return time_ms if height else self.genesis.genesis_time_ms

    def status(self) -> dict[str, Any]:
        # The tip the engine remembers: reading and decoding the last block instead (1,000
        # transactions, every one checked) made each poll of /v1/status cost ~15 ms, and a
        # catching-up node polled by its operator spent a tenth of its time on it.
        height, block_hash, time_ms = self.engine.tip()
        me = self.genesis.validator_by_pubkey(self.pubkey)
        connected = set(self.p2p.connected_peers())
        others = self.p2p.other_runtimes()
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis.hash.hex(),
            "node_id": self.pubkey.hex(),
            "name": me.name if me else self.config.name,
            "height": height,
            "latest_block_hash": block_hash.hex() if height else None,
            "latest_block_time_ms": time_ms if height else None,
            "state_root": self.engine.tree.root.hex(),
            "round": self.driver.round,
            "step": self.driver.core.step_name.name.lower(),
            "started_height": self.driver.started_height,
            "runtime": self.p2p.runtime,
            "peers": [
                {"node_id": v.pubkey.hex(), "name": v.name, "org": v.org,
                 **({"other_runtime": others[v.pubkey]} if v.pubkey in others else {})}
                for v in self.genesis.validators if v.pubkey in connected
            ],
            "validators": [
                {"node_id": v.pubkey.hex(), "name": v.name, "org": v.org, "api": v.api,
                 "connected": v.pubkey in connected or v.pubkey == self.pubkey}
                for v in self.genesis.validators
            ],
            "syncing": self.driver.syncing,
            "mempool": len(self.mempool),
            "contracts": sorted(self.contracts),
            "uptime_s": int(time.time() - self.started_at),
        }

    async def start(self) -> None:
        try:
            await self.p2p.start()
        except OSError as exc:
            self.store.close()
            raise NodeStartError(
                f"cannot listen for peers on {self.config.p2p_listen}: {exc.strerror}") from None
        await self.driver.start()
        app = Api(self).app()
        from node.webpage import add_web_routes  # the web page lives beside the API
        add_web_routes(app, self)
        # keepalive_timeout: aiohttp arms it when a connection opens and closes a
        # connection still waiting for a complete request when it fires (a half-sent
        # request, or an idle keep-alive one); its default is an hour.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=self.config.idle_timeout_s)
        await self._runner.setup()
        try:
            self.api_connections.server = self._runner.server
            self._api_server = await asyncio.get_running_loop().create_server(
                self.api_connections, self.config.api_host, self.config.api_port,
                reuse_address=True)
        except OSError as exc:
            await self.stop()
            raise NodeStartError(f"cannot listen on {self.config.api_listen}: {exc.strerror}") \
                from None
        log.info("node %s listening: api http://%s p2p %s, height %d (event loop: %s)",
                 self.config.name, self.config.api_listen, self.config.p2p_listen,
                 self.store.height, type(asyncio.get_running_loop()).__module__.split(".")[0])

    async def stop(self) -> None:
        self.bus.close()  # end event streams first so the HTTP server can drain quickly
        if self._api_server is not None:
            self._api_server.close()  # no new connections; the runner ends the open ones
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._api_server is not None:
            await self._api_server.wait_closed()
            self._api_server = None
        await self.driver.stop()
        await self.p2p.stop()
        self.store.close()


def _plyvel_reason(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def fatal_message(exc: BaseException, data_dir: Any) -> str:
    """The operator's one-line reason when the consensus loop had to stop."""
    if isinstance(exc, StoreError) and isinstance(exc.__cause__,
                                                  OSError | plyvel.Error | BlockFileError):
        # a block write in the background failed (LedgerStore.settle), or a block file read
        # back damaged (LedgerStore._from_files)
        exc = exc.__cause__
    if isinstance(exc, LeafIndexError):  # a derived index: rebuilt from the values
        return (f"the data directory {data_dir} is damaged ({exc}); the node stopped without "
                "committing on top of it: with the node stopped, `jangbu node rebuild-index "
                "--home <its home>` rebuilds the index from the stored values "
                "(docs/operations.md)")
    if isinstance(exc, plyvel.CorruptionError | BlockFileError):
        return (f"the data directory {data_dir} is damaged ({_plyvel_reason(exc)}); the node "
                "stopped without committing on top of it: restore a backup or remove it and "
                "resync (docs/operations.md)")
    if isinstance(exc, OSError | plyvel.Error):
        return (f"cannot write to the data directory {data_dir} ({_plyvel_reason(exc)}); is the "
                "disk full? Every block is written whole, so nothing is half-committed: free "
                "space and start the node again (docs/operations.md)")
    return (f"internal error in the consensus loop ({type(exc).__name__}: {exc}); the node "
            "stopped rather than sign something wrong: please report it with the log")


def engine_root_mismatch(node: Node) -> bool:
    """Does the state differ from the one the last block commits to?

    The tree is rebuilt from the stored values at start (``StateTree.from_state``), so every
    value is hashed into its root: a value changed, lost or added reads as a mismatch here.
    It was a second pass, over the leaf index, then a check of the values against it
    (docs/benchmarks.md, nineteenth round); the index is now checked bucket by bucket as it
    is read (``LeafIndexError``). Before the first block the state is compared with the
    genesis state's root: a value damaged then was once left to the first block that read
    it (found by review)."""
    return expected_state_root(node.store, node.genesis) != node.engine.tree.root


REJECTION_CODES = ("bad_signature", "non_validator", "old_height", "duplicate",
                   "buffer_full", "round_too_far", "wrong_proposer", "too_many_proposals",
                   "duplicate_proposal", "conflict_stash_full", "conflicting_vote",
                   "stale_start", "unknown_event")


class CappedConnections:
    """The API server's protocol factory: aiohttp's, up to ``limit`` open connections.

    Why: every connection holds a file descriptor, and so do LevelDB's tables, the block
    files and the peers' links; without a cap one client holding thousands of connections
    (a review held 130 against a lowered limit) could leave the store unable to open a
    table, which stops the node. One connection more is answered ``503 E_BUSY`` and
    closed at once, so a client sees why (CometBFT's ``max_open_connections``).
    """

    def __init__(self, server: Any, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.refused = 0

    def open(self) -> int:
        return 0 if self.server is None else len(self.server.connections)

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open() >= self.limit:
            self.refused += 1
            return _Busy()
        protocol: asyncio.BaseProtocol = self.server()
        if type(protocol) is RequestHandler:  # the class aiohttp's server makes
            protocol.__class__ = JsonErrorsRequestHandler
        return protocol


class JsonErrorsRequestHandler(RequestHandler):
    """aiohttp's connection handler, whose own error answers are JSON like the API's.

    Why: a request aiohttp refuses before routing (a request line over 8 KiB, a header too
    long, a line that is not HTTP) was answered ``400 text/plain`` ("Got more than 8190
    bytes..."), the one error without the API's ``{"code", "message"}`` (review). The
    answer keeps aiohttp's status and closes the connection as aiohttp does; the logging
    is aiohttp's (node/app.py ``malformed_http_in_one_line``). Set as the class of the
    handler aiohttp's server makes (same slots, no state of its own), since the server
    has no parameter for its handler class.
    """

    __slots__ = ()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        connection_watch.connection_lost(self)  # an event stream waiting for records ends

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)
        if status >= 500:
            code, text = "E_INTERNAL", "the node failed to handle this request (see its log)"
        else:
            code = "E_MALFORMED_HTTP"
            text = (message or (str(exc) if exc is not None else "")
                    or HTTPStatus(status).phrase).splitlines()[0][:300]
        answer = web.json_response({"code": code, "message": text}, status=plain.status)
        answer.force_close()
        return answer


_BUSY_BODY = (b'{"code": "E_BUSY", "message": "the node has as many HTTP connections open '
              b'as it allows ([api] max_connections); retry later"}')
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class _Busy(asyncio.Protocol):
    """A connection over the cap: the 503 answer, then closed (nothing read)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_BUSY)  # type: ignore[attr-defined]  # a stream transport
        transport.close()


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for journald and log shippers.

    A record's traceback goes in ``exc`` (and ``logging``'s stack in ``stack``): it used to
    be dropped, so under ``--log-format json`` (the systemd unit's and compose's) a node
    that stopped on an internal error left nothing to report but its last message.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": round(record.created, 3),
                                "level": record.levelname.lower(), "logger": record.name,
                                "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel("WARNING")
    logging.getLogger("aiohttp.server").addFilter(malformed_http_in_one_line)


def malformed_http_in_one_line(record: logging.LogRecord) -> bool:
    """Log a request aiohttp could not parse (a URL over 8 KiB, an unknown
    Content-Encoding...) or whose body does not decode (aiohttp drains it after our 400)
    as one warning line instead of an error with a traceback: it is the client's fault,
    answered 400, and anyone can send it (a black-box review found the tracebacks filling
    the log). A client that closed its connection before aiohttp could answer (one that
    sent ``Expect: 100-continue`` and left, say) is one info line. Errors in our own
    handlers keep their traceback.

    The exception's text quotes the client's request, so it goes into the record's
    arguments, never into its format string: a ``%`` in a URL once broke the line into
    a "Logging error" traceback (review)."""
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError | RequestPayloadError):
        what, level = "malformed HTTP request", logging.WARNING
    elif isinstance(exc, ConnectionResetError):
        what, level = "the client closed the connection", logging.INFO
    else:
        return True
    try:
        said = record.getMessage()
    except (TypeError, ValueError):
        said = str(record.msg)
    # aiohttp's texts span lines ("400, message:\n  Can not decode..."): one line each.
    record.msg, record.args = "%s: %s: %s", (said, what, " ".join(str(exc).split())[:200])
    record.exc_info = None
    record.exc_text = None
    record.levelno, record.levelname = level, logging.getLevelName(level)
    return True


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (``pip install jangbu[speedups]``), else
    asyncio's own; ``JANGBU_EVENT_LOOP=asyncio`` forces the latter.

    Optional because it is a compiled third-party package; it is worth having: a node spends
    5-10% of its CPU in the event loop under load, and with uvloop the 4-node benchmark
    measured 1,512 vs 1,397 tx/s (median of 3 paired runs, docs/benchmarks.md).
    """
    if os.environ.get("JANGBU_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def choose_codec() -> bool:
    """Use the compiled canonical codec unless ``JANGBU_PURE_CODEC=1``; True if in use.

    Both encoders give the same bytes and both decoders accept the same inputs; the
    compiled encoder (built by ``pip install`` where a C compiler exists) cut a validator's
    CPU per transaction by ~16%, the one-pass decoder 2% of its instructions more
    (docs/benchmarks.md, third and twenty-second rounds).
    """
    pure = os.environ.get("JANGBU_PURE_CODEC", "") not in ("", "0")
    return canonical.use_compiled_encoder(not pure)


def choose_tree_loops() -> bool:
    """Use the compiled state-tree loops unless ``JANGBU_PURE_TREE=1``; True if in use.

    Same hashes either way; the compiled ones (built where OpenSSL's headers exist) cut the
    tree's share of a node's CPU (docs/benchmarks.md, fifth round).
    """
    pure = os.environ.get("JANGBU_PURE_TREE", "") not in ("", "0")
    return state_tree.use_compiled_tree(not pure)


GC_GEN0_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Move what start-up built out of the collector's way and collect less often.

    Every transaction allocates hundreds of short-lived containers (decoded maps, overlay
    entries, receipts), so with the default gen-0 threshold of 700 the cyclic collector
    runs several times per transaction and its older generations keep re-walking the
    start-up objects (state tree, contracts, genesis). Freezing those and raising the
    threshold cut node CPU per transaction by ~4% under load (docs/benchmarks.md); memory
    is still reclaimed by reference counting, only cycles wait a little longer.

    No full collection first: it took 15-28 ms right after the node starts listening, on
    a restarted node's way to its first synced block, to free ~300 objects that start-up
    left as cycles (docs/benchmarks.md, twenty-first round); those are frozen with the rest.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


SWITCH_INTERVAL_S = 0.0005


def tune_thread_switching() -> None:
    """Hand the interpreter to a waiting helper thread within 0.5 ms instead of 5.

    The node's helper threads (a synced block's write, a block's batched signature checks)
    spend their time in C without the interpreter lock, but take it back for a few Python
    steps between those calls (``batch.write()`` returning, the next file call, the
    future's result). A thread that wants the lock while the event loop runs waits for
    the switch interval before the loop must yield it: with CPython's default of 5 ms, a
    block's write took several of those waits, and the next block's commit then waited
    for the write (~7 ms a synced block in one process, 130-170 ms over 21 blocks; 5-14 ms
    at 0.5 ms; docs/benchmarks.md, twenty-second round). The interval matters only while
    another thread asks for the lock: the event loop alone never switches.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


async def stop_and_log(node: Any, data_dir: Any) -> int:
    """Stop ``node`` and log the height it stopped at: the store's height *after* the stop,
    which finishes the commit in flight (read before it, the line said one less than the
    store held, and operators compare that line with their peers' heights)."""
    try:
        await node.stop()
    except StoreError as exc:  # the last synced block's write, found failed on the way out
        log.critical("stopped at height %d: %s", int(node.store.height) - 1, exc)
        raise NodeStartError(fatal_message(exc, data_dir)) from None
    height = int(node.store.height)
    log.info("stopped at height %d", height)
    return height


async def run_node(config: NodeConfig) -> None:
    """Run until SIGTERM/SIGINT, then shut down cleanly."""
    tune_thread_switching()
    compiled = choose_codec()
    if os.environ.get(stage_cpu.ENV, "") not in ("", "0"):
        try:
            stage_cpu.install()
        except LookupError as exc:  # this build's code and its stage list disagree
            raise NodeStartError(f"{stage_cpu.ENV}: {exc}; start without it") from None
        log.info("stage CPU accounting on (%s): /metrics has jangbu_stage_cpu_seconds_total",
                 stage_cpu.ENV)
    log.info("python %s, unicode %s (every validator should run the same: docs/operations.md)",
             ".".join(map(str, sys.version_info[:3])), unicodedata.unidata_version)
    log.info("canonical encoder: %s", "compiled" if compiled else "pure Python")
    log.info("state tree loops: %s", "compiled" if choose_tree_loops() else "pure Python")
    log.info("clearance contract: %s", clearance_build.BUILD)
    log.info("signature checks of a block: %s", "batched, worker thread + event loop thread"
             if sigcheck.background_checks() else "one by one on the event loop thread")
    log.info("signature checks of keys seen before: %s", "from their tables, else libsodium"
             if sigcheck.keyed_checks() else "libsodium (JANGBU_KEYED_SIGCHECK=0, or not built)")
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node.driver.on_fatal = lambda exc: stop.set()
    await node.start()
    tune_garbage_collector()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await stop_and_log(node, config.data_dir)
    if node.driver.fatal is not None:
        raise NodeStartError(fatal_message(node.driver.fatal, config.data_dir))
