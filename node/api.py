"""The HTTP API (aiohttp, JSON, versioned under ``/v1``).

Errors are always JSON ``{"code": "E_...", "message": "..."}`` with a 4xx status for the
caller's mistakes (400 malformed, 401/403 auth, 404 unknown, 409 replay, 413 too large) and
503 with ``Retry-After`` when the mempool is full. Reads of private records need a request
signed by a member key (see ``docs/protocol.md``, "Signed reads").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError

from consensus import canonical
from contracts.sdk import ContractError, Member
from node import connection_watch, merkle
from node.block import result_leaf_from_encoded
from node.defaults import MAX_WAIT_COMMIT_S
from node.driver import EVIDENCE_PREFIX
from node.event_frames import FrameMemo, sse_frame
from node.events import EventFilter, event_records
from node.execution import member_lookup, run_query
from node.jsonform import to_json
from node.mempool import AdmissionError, MempoolFull
from node.openapi import OPENAPI
from node.state import state_key
from node.state_tree import LeafIndexError
from node.store import StoreError
from node.tx import Transaction, TxBytesError, TxError

if TYPE_CHECKING:
    from node.app import Node

TAG_READ = "jangbu/read/v1"
MAX_BATCH = 5000
MSGPACK = "application/msgpack"
_DECIMAL = re.compile(r"[0-9]{1,19}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,9})?")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def decimal_arg(text: str, what: str) -> int:
    """A non-negative integer from a path, query or header value: ASCII digits only.

    Why not ``int()``: it also takes ``1_0``, surrounding spaces, a sign and other scripts'
    digits, so ``/v1/blocks/1_0`` answered block 10 (review); a value a client spelled
    wrong gets a 400, not some other record.
    """
    if _DECIMAL.fullmatch(text) is None:
        raise ApiError(400, "E_ARGS", f"{what} must be a decimal integer (digits 0-9)")
    return int(text)


MAX_EVIDENCE_PAGE = 1000
_EVIDENCE_KINDS = {0: "proposal", 1: "prevote", 2: "precommit"}


def evidence_entry(key: bytes, value: bytes) -> dict[str, Any]:
    """One evidence record as JSON. Keys from before the kind and round were in them
    (``e/`` + height + validator) read the same: both come from the messages too."""
    entry: dict[str, Any] = {"id": key[len(EVIDENCE_PREFIX):].hex(),
                             "height": int.from_bytes(key[2:10], "big"),
                             "validator": key[10:42].hex()}
    try:
        first, second = canonical.decode_trusted(value)
        kind = "proposal" if "proposer" in first else _EVIDENCE_KINDS.get(first.get("type"),
                                                                          "vote")
        round_ = first.get("round")
    except (ValueError, TypeError, AttributeError):  # written by this node; never crash
        return {**entry, "kind": "unreadable", "round": None, "messages": []}
    return {**entry, "kind": kind, "round": round_,
            "messages": [to_json(first), to_json(second)]}


def hex_arg(text: str) -> bytes | None:
    """Bytes from plain hex (no spaces or separators, which ``bytes.fromhex`` skips), or
    None."""
    return bytes.fromhex(text) if _HEX.fullmatch(text) is not None else None
SSE_BATCH = 500  # records per write of the event stream

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]




class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


log = logging.getLogger("jangbu.api")

_CONTRACT_STATUS = {"E_NOT_FOUND": 404, "E_FORBIDDEN": 403, "E_ROLE": 403,
                    "E_UNKNOWN_CONTRACT": 404, "E_UNKNOWN_QUERY": 404}


def parse_json(raw: str | bytes, code: str, what: str) -> Any:
    """JSON from a client, or ApiError(400, ``code``). Besides malformed text this refuses
    what the parser cannot hold (regressions, each a 500 before): nesting deeper than the
    interpreter's recursion limit (RecursionError) and integers of more than 4,300 digits
    (ValueError; JSONDecodeError is one too)."""
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as exc:
        raise ApiError(400, code, f"{what}: key {str(exc)[:100]!r} appears twice in one "
                       "object") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, code, f"{what}: {str(exc)[:200]}") from None


class _DuplicateKeyError(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats: ``json`` keeps the last value, so a
    client's ``{"a": 1, "a": 2}`` meant whatever the parser chose (review); the canonical
    msgpack form already refuses it."""
    obj = dict(pairs)
    if len(obj) != len(pairs):  # (rare: only then look for the key)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


MAX_BODY_KEY = web.AppKey("max_request_bytes", int)


def too_large(request: web.Request) -> web.Response | None:
    """A 413 for a body whose declared length is over the limit, before any of it is read
    (a ``Content-Length`` of 99 GB was left waiting for its body, and with ``Expect:
    100-continue`` invited to send it; review). The connection is closed after it: the
    client may be sending the body anyway."""
    limit = request.config_dict.get(MAX_BODY_KEY)  # what aiohttp enforces on the body
    declared = request.content_length
    if limit is None or declared is None or declared <= limit:
        return None
    answer = error_response(413, "E_TOO_LARGE",
                            f"the body is {declared} bytes, the limit is {limit} "
                            "([api] max_request_bytes)")
    answer.force_close()
    return answer


async def expect_handler(request: web.Request) -> web.Response | None:
    """``Expect: 100-continue``: the 413 at once for a body declared over the limit, else
    what aiohttp does (``100 Continue``; another expectation is 417)."""
    refused = too_large(request)
    if refused is not None:
        return refused
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        return error_response(417, "E_EXPECT", f"unknown Expect: {expect[:100]}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    refused = too_large(request)
    if refused is not None:
        return refused
    try:
        if len(request.query) != len(set(request.query)):
            # ``?order_id=A&order_id=B`` answered for B (review): say which is meant.
            twice = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
            raise ApiError(400, "E_ARGS", f"query parameter {twice[0][:100]!r} is given "
                           "more than once")
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except ContractError as exc:
        return error_response(_CONTRACT_STATUS.get(exc.code, 400), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "E_NOT_FOUND", 405: "E_METHOD", 413: "E_TOO_LARGE"}.get(exc.status, "E_HTTP")
        # A 405 must say what is allowed (RFC 9110 §15.5.6); it was dropped here (review).
        kept = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        return error_response(exc.status, code, exc.reason, kept or None)
    except (StoreError, LeafIndexError) as exc:  # damaged data read back (a block file failing
        # its checksum, a leaf index entry that does not match the stored values)
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(500, "E_STORE", str(exc))


class Api:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._trees: dict[int, Any] = {}
        self._frames = FrameMemo()  # live event frames, shared by every stream

    def app(self) -> web.Application:
        app = web.Application(middlewares=[errors_middleware],
                              client_max_size=self.node.config.max_request_bytes)
        app[MAX_BODY_KEY] = self.node.config.max_request_bytes
        r = app.router
        r.add_post("/v1/txs", self.post_tx, expect_handler=expect_handler)
        r.add_post("/v1/txs/batch", self.post_batch, expect_handler=expect_handler)
        r.add_get("/v1/txs/{hash}", self.get_tx)
        r.add_get("/v1/blocks/latest", self.get_latest_block)
        r.add_get("/v1/blocks/{height}", self.get_block)
        r.add_get("/v1/status", self.get_status)
        r.add_get("/v1/evidence", self.get_evidence)
        r.add_get("/v1/state/{contract}/{key:.+}", self.get_state)
        r.add_get("/v1/query/{contract}/{name}", self.get_query)
        # No HEAD: the handler streams, and a HEAD answered with a stream's body
        # desynchronised the connection (review); aiohttp answers it 405.
        r.add_get("/v1/events", self.get_events, allow_head=False)
        r.add_get("/v1/openapi.json", self.get_openapi)
        r.add_get("/metrics", self.get_metrics)
        r.add_get("/healthz", self.get_health)
        return app

    # --- helpers ----------------------------------------------------------------------------

    async def _raw_body(self, request: web.Request) -> bytes:
        """The whole body, within ``[api] idle_timeout_s`` (a body sent a byte at a time
        held its connection for good; review)."""
        try:
            async with asyncio.timeout(self.node.config.idle_timeout_s):
                return await request.read()
        except TimeoutError:
            raise ApiError(408, "E_TIMEOUT", "the request body did not arrive within "
                           f"{self.node.config.idle_timeout_s} s") from None
        except ConnectionResetError:  # the client went away mid-body: nobody to answer
            raise ApiError(400, "E_MALFORMED", "connection lost while reading the body") \
                from None
        except (RequestPayloadError, ContentEncodingError, zlib.error) as exc:
            # A body that does not decode as its Content-Encoding says (regression: a
            # corrupt gzip body was a 500).
            raise ApiError(400, "E_MALFORMED",
                           f"body does not decode: {' '.join(str(exc).split())}") from None

    async def _json_body(self, request: web.Request) -> Any:
        raw = await self._raw_body(request)
        if request.content_type == MSGPACK:
            try:
                # Up to the request limit, as JSON is: the canonical decoder's default
                # is the 4 MiB p2p message limit (review: a 4.2 MB batch was "malformed").
                return ("msgpack", canonical.decode(raw, self.node.config.max_request_bytes))
            except canonical.CanonicalError as exc:
                raise ApiError(400, "E_MALFORMED", str(exc)) from None
        return ("json", parse_json(raw, "E_MALFORMED", "body is not valid JSON"))

    @staticmethod
    def _parse_tx(form: str, obj: Any) -> Transaction:
        """One transaction of a body: JSON object, or in msgpack its canonical bytes (``bin``,
        decoded as they are: no re-encoding) or its canonical map."""
        if form != "msgpack":
            return Transaction.from_json(obj)
        if isinstance(obj, bytes):
            return Transaction.decode(obj)
        return Transaction.from_obj(obj)

    def _admit(self, tx: Transaction) -> None:
        try:
            self.node.driver.submit_local(tx)
        except MempoolFull as exc:
            raise ApiError(503, exc.code, exc.message, {"Retry-After": "1"}) from None
        except AdmissionError as exc:
            status = 409 if exc.code in ("E_ALREADY_COMMITTED", "E_DUPLICATE") else 400
            raise ApiError(status, exc.code, exc.message) from None

    def _results_tree(self, height: int) -> tuple[Any, list[Any], merkle.MerkleTree]:
        """Block, receipts and results Merkle tree of ``height``, cached for a few blocks."""
        cached = self._trees.get(height)
        if cached is None:
            store = self.node.store
            block = store.get_block(height)
            if block is None:
                raise ApiError(404, "E_NOT_FOUND", f"no block at height {height}")
            receipts = store.receipts_of(height)
            leaves = [result_leaf_from_encoded(tx.hash, r.encoded)
                      for tx, r in zip(block.txs, receipts, strict=True)]
            cached = (block, receipts, merkle.MerkleTree(leaves), leaves)
            self._trees[height] = cached
            while len(self._trees) > 16:
                del self._trees[next(iter(self._trees))]
        block, receipts, tree, _ = cached
        return block, receipts, tree

    def _committed_json(self, tx_hash: bytes, height: int, index: int) -> dict[str, Any]:
        block, receipts, tree = self._results_tree(height)
        leaves = self._trees[height][3]
        receipt = receipts[index]
        return {
            "hash": tx_hash.hex(),
            "status": "committed",
            "height": height,
            "index": index,
            "block_hash": block.hash.hex(),
            "code": receipt.code,
            "message": receipt.message,
            "events": to_json([e.to_obj() for e in receipt.events]),
            "proof": {
                "results_root": block.header.results_root.hex(),
                "leaf": leaves[index].hex(),
                "index": index,
                "size": len(leaves),
                "path": [p.hex() for p in tree.proof(index)],
            },
        }

    # --- transactions -----------------------------------------------------------------------

    async def post_tx(self, request: web.Request) -> web.Response:
        if request.content_type == MSGPACK:  # the canonical bytes themselves
            form, obj = "msgpack", await self._raw_body(request)
        else:
            form, obj = await self._json_body(request)
        try:
            tx = self._parse_tx(form, obj)
        except TxBytesError as exc:  # the body itself does not parse (review: the same
            # truncated bytes were E_MALFORMED_TX here, E_MALFORMED on the batch endpoint)
            raise ApiError(400, "E_MALFORMED", f"body is not canonical msgpack: "
                           f"{exc.message}") from None
        except TxError as exc:
            raise ApiError(400 if exc.code != "E_TX_TOO_LARGE" else 413, exc.code,
                           exc.message) from None
        wait = request.query.get("wait", "")
        if wait not in ("", "none", "commit"):
            raise ApiError(400, "E_ARGS", "wait must be 'commit' or absent")
        if wait != "commit":
            self._admit(tx)
            return web.json_response({"hash": tx.hash.hex(), "status": "pending"}, status=202)
        timeout = self._timeout(request)
        fut = self.node.driver.wait_for(tx.hash)
        try:
            self._admit(tx)
            committed = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise ApiError(504, "E_TIMEOUT", "not committed within the timeout; the transaction "
                           f"is still pending: poll GET /v1/txs/{tx.hash.hex()}",
                           {"X-Tx-Hash": tx.hash.hex()}) from None
        finally:
            self.node.driver.forget_waiter(tx.hash, fut)
        return web.json_response(self._committed_json(tx.hash, committed.height,
                                                      committed.index))

    def _timeout(self, request: web.Request) -> float:
        raw = request.query.get("timeout", str(self.node.config.wait_commit_timeout_s))
        if _SECONDS.fullmatch(raw) is None:
            raise ApiError(400, "E_ARGS", "timeout must be a number of seconds")
        value = float(raw)
        if not 0 < value <= MAX_WAIT_COMMIT_S:
            raise ApiError(400, "E_ARGS", f"timeout must be in (0, {MAX_WAIT_COMMIT_S}] seconds")
        return value

    async def post_batch(self, request: web.Request) -> web.Response:
        form, obj = await self._json_body(request)
        items = obj.get("txs") if isinstance(obj, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError(400, "E_MALFORMED", "body must be {\"txs\": [...]} with transactions")
        if len(items) > MAX_BATCH:
            raise ApiError(413, "E_TOO_LARGE", f"at most {MAX_BATCH} transactions per batch")
        results = []
        accepted = 0
        for item in items:
            try:
                tx = self._parse_tx(form, item)
                self._admit(tx)
                results.append({"hash": tx.hash.hex(), "status": "pending"})
                accepted += 1
            except TxError as exc:
                results.append({"status": "rejected", "code": exc.code, "message": exc.message})
            except ApiError as exc:
                results.append({"status": "rejected", "code": exc.code, "message": exc.message,
                                **({"hash": tx.hash.hex()} if exc.code != "E_MALFORMED" else {})})
        return web.json_response({"accepted": accepted, "results": results}, status=200)

    async def get_tx(self, request: web.Request) -> web.Response:
        tx_hash = hex_arg(request.match_info["hash"])
        if tx_hash is None or len(tx_hash) != 32:
            raise ApiError(400, "E_ARGS", "hash must be 64 hex characters")
        raw = tx_hash.hex()
        location = self.node.store.tx_location(tx_hash)
        if location is not None:
            return web.json_response(self._committed_json(tx_hash, *location))
        if tx_hash in self.node.mempool:
            return web.json_response({"hash": raw, "status": "pending"})
        return web.json_response({"hash": raw, "status": "unknown", "code": "E_UNKNOWN_TX",
                                  "message": "this node has not seen the transaction"},
                                 status=404)

    # --- blocks and status ------------------------------------------------------------------

    def _block_json(self, height: int) -> dict[str, Any]:
        block = self.node.store.get_block(height)
        if block is None:
            raise ApiError(404, "E_NOT_FOUND", f"no block at height {height}")
        return {
            "header": block.header.to_json(),
            "hash": block.hash.hex(),
            "txs": [{**tx.to_json(), "hash": tx.hash.hex()} for tx in block.txs],
            "last_commit": to_json(block.last_commit),
            "certificate": to_json(self.node.store.get_commit(height)),
        }

    async def get_latest_block(self, request: web.Request) -> web.Response:
        height = self.node.store.height
        if height == 0:
            raise ApiError(404, "E_NOT_FOUND", "no block committed yet")
        return web.json_response(self._block_json(height))

    async def get_block(self, request: web.Request) -> web.Response:
        height = decimal_arg(request.match_info["height"], "height")
        if not 0 <= height < 2**63:
            raise ApiError(400, "E_ARGS", "height must be between 0 and 2^63-1")
        return web.json_response(self._block_json(height))

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.status())

    async def get_evidence(self, request: web.Request) -> web.Response:
        """Conflicting messages validators signed, as this node saw them, oldest first: who
        equivocated, when, and the two signed messages that prove it, checkable by anyone
        holding the validator keys. ``?from_height=`` starts at a height; ``?after=`` at
        the record after the one with that ``id`` (each page's ``next``), since one height
        can hold more records than a page; ``?limit=`` up to 1,000."""
        q = request.query
        from_height = decimal_arg(q["from_height"], "from_height") if "from_height" in q else 0
        limit = decimal_arg(q["limit"], "limit") if "limit" in q else 100
        if not 1 <= limit <= MAX_EVIDENCE_PAGE:
            raise ApiError(400, "E_ARGS", f"limit must be 1 to {MAX_EVIDENCE_PAGE}")
        if from_height >= 1 << 63:
            raise ApiError(400, "E_ARGS", "from_height must be below 2**63")
        start = EVIDENCE_PREFIX + from_height.to_bytes(8, "big")
        if "after" in q:
            after = hex_arg(q["after"])
            if after is None or not 8 <= len(after) <= 64:
                raise ApiError(400, "E_ARGS", "after must be the id of an evidence record "
                               "(hex, as a page's next gives it)")
            start = max(start, EVIDENCE_PREFIX + after + b"\x00")
        items: list[dict[str, Any]] = []
        last = b""
        more = False
        for key, value in self.node.store.scan_records_from(EVIDENCE_PREFIX, start):
            if len(items) == limit:
                more = True
                break
            items.append(evidence_entry(key, value))
            last = key
        answer: dict[str, Any] = {"evidence": items, "more": more}
        if more:
            answer["next"] = last[len(EVIDENCE_PREFIX):].hex()
        return web.json_response(answer)

    async def get_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "height": self.node.store.height})

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.node.metrics.render(),
                            content_type="text/plain", charset="utf-8")

    async def get_openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    # --- state and queries ------------------------------------------------------------------

    async def get_state(self, request: web.Request) -> web.Response:
        contract = request.match_info["contract"]
        key = request.match_info["key"]
        if contract not in self.node.contracts:
            raise ApiError(404, "E_UNKNOWN_CONTRACT", f"contract {contract!r} is not enabled")
        full_key = state_key(contract, key)
        raw = self.node.store.get_state(full_key)
        proof = self.node.engine.tree.prove(full_key, self.node.store.leaves)
        body = {
            "contract": contract,
            "key": key,
            "height": self.node.store.height,
            "state_root": self.node.engine.tree.root.hex(),
            "value": None if raw is None else to_json(canonical.decode(raw)),
            "value_bytes": None if raw is None else raw.hex(),
            "proof": proof.to_json(),
        }
        if raw is None:  # still a proof (of absence), and like every 404 it has a code
            body.update(code="E_NOT_FOUND", message=f"no value at {contract}/{key}; "
                        "the proof shows its absence")
        return web.json_response(body, status=200 if raw is not None else 404)

    def _caller(self, request: web.Request) -> Member | None:
        key_hex = request.headers.get("X-Jangbu-Key")
        if key_hex is None:
            return None
        sig_hex = request.headers.get("X-Jangbu-Signature", "")
        time_raw = request.headers.get("X-Jangbu-Time", "")
        pubkey, sig = hex_arg(key_hex), hex_arg(sig_hex)
        if pubkey is None or sig is None or _DECIMAL.fullmatch(time_raw) is None:
            raise ApiError(401, "E_AUTH", "X-Jangbu-Key/-Time/-Signature are malformed")
        time_ms = int(time_raw)
        window = self.node.config.read_auth_window_s * 1000
        if abs(int(time.time() * 1000) - time_ms) > window:
            raise ApiError(401, "E_AUTH_EXPIRED", "signed request is outside the time window")
        # The target exactly as sent (percent-encoding included): what the client signed.
        body = {"method": request.method, "path": request.raw_path, "time_ms": time_ms}
        if not canonical.verify(pubkey, TAG_READ, self.node.chain_id, body, sig):
            raise ApiError(401, "E_AUTH", "request signature does not verify")
        member: Member | None = member_lookup(self.node.store.state)(pubkey)
        if member is None or member.revoked:
            raise ApiError(403, "E_FORBIDDEN", "signer is not an active member")
        return member

    async def get_query(self, request: web.Request) -> web.Response:
        args: dict[str, Any] = {k: v for k, v in request.query.items() if k != "args"}
        if "args" in request.query:
            extra = parse_json(request.query["args"], "E_ARGS", "args must be a JSON object")
            if not isinstance(extra, dict):
                raise ApiError(400, "E_ARGS", "args must be a JSON object")
            both = sorted(set(extra) & set(args))
            if both:  # one value each, or the JSON silently replaced the plain parameter
                raise ApiError(400, "E_ARGS", f"{both[0][:100]!r} is given both as a query "
                               "parameter and inside args")
            args.update(extra)
        caller = self._caller(request)
        store = self.node.store
        result = run_query(self.node.contracts, store.state, chain_id=self.node.chain_id,
                           height=store.height, time_ms=self.node.last_block_time(),
                           contract_name=request.match_info["contract"],
                           name=request.match_info["name"], args=args, caller=caller)
        return web.json_response({"height": store.height, "result": to_json(result)})

    # --- events -----------------------------------------------------------------------------

    async def get_events(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        flt = EventFilter(contract=q.get("contract"), type=q.get("type"), key=q.get("key"))
        from_height = None
        if "from_height" in q:
            from_height = decimal_arg(q["from_height"], "from_height")
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        # Headers first, then the subscription, inside the try that ends it: a client gone
        # before the headers went out made prepare() raise after subscribing, and its
        # subscription (one that never matched never overflowed) stayed for good; 5,000 of
        # them took a node's commits from 316 to 45 tx/s (review).
        await response.prepare(request)
        sub = self.node.bus.subscribe(flt)
        gone = asyncio.Event()

        def client_gone() -> None:
            gone.set()
            sub.end()

        unwatch = connection_watch.watch(request, client_gone)
        # from_height is a lower bound for live records too (one far ahead used to get the
        # next commit's records anyway).
        last_height = max(0, from_height - 1) if from_height is not None else 0
        try:
            if from_height is not None:
                store = self.node.store
                top = store.height
                for height in range(max(1, from_height), top + 1):
                    # One height at a time, then the loop's other work: consensus runs on this
                    # thread, and a replay matching nothing never reached an await (a review's
                    # 20 streams on a 256-block chain held commits back by 4.5 s).
                    await asyncio.sleep(0)
                    if gone.is_set():  # nobody to replay to: stop reading (review)
                        return response
                    block = store.get_block(height)
                    if block is None:
                        continue
                    records = event_records(height, block.header.time_ms,
                                            [tx.hash for tx in block.txs],
                                            store.receipts_of(height))
                    for past in records:
                        if flt.matches(past):
                            await self._sse(response, past)
                    last_height = height
            await response.write(b": live\n\n")
            while True:
                try:
                    async with asyncio.timeout(15):
                        record = await sub.queue.get()
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if record is None:
                    break  # the node is shutting down, or the client has gone
                # Send what has queued up in one write: under load a commit brings
                # hundreds of records at once, and a write per record costs a syscall each.
                batch: list[dict[str, Any] | None] = [record]
                while len(batch) < SSE_BATCH and not sub.queue.empty():
                    batch.append(sub.queue.get_nowait())
                frame = self._frames.frame
                chunk = b"".join(frame(r) for r in batch
                                 if r is not None and r["height"] > last_height)
                if chunk:
                    await response.write(chunk)
                if batch[-1] is None:
                    break  # the node is shutting down
                if sub.overflowed and sub.queue.empty():
                    # Dropped by the bus for falling behind: say so; the client resumes
                    # with ?from_height= (docs/operations.md section 7).
                    await response.write(b"event: overflow\ndata: {}\n\n")
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except StoreError as exc:
            # Replaying damaged history: the response has started, so the middleware cannot
            # answer; say it in the stream (as `overflow` does) and end it.
            log.error("GET %s: %s", request.path_qs, exc)
            error = json.dumps({"code": "E_STORE", "message": str(exc)})
            with contextlib.suppress(ConnectionResetError):
                await response.write(f"event: error\ndata: {error}\n\n".encode())
        finally:
            unwatch()
            sub.close()
            if not self.node.bus.subscribers:
                self._frames.clear()  # no stream left to share frames with
        return response

    @staticmethod
    async def _sse(response: web.StreamResponse, record: dict[str, Any]) -> None:
        await response.write(sse_frame(record))
