"""Block execution: build a candidate block, validate a proposed one, commit a decided one.

The proposer executes its candidate against an overlay of the committed state to fill
``state_root`` and ``results_root``; every validator re-executes a proposal before it
prevotes and rejects a block whose roots differ. Because contracts are deterministic, the
roots agree byte for byte on honest nodes. Results are cached by block hash so that the
commit of a block this node already executed costs no second execution.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensus import canonical
from consensus.types import Commit, ValidatorSet, verify_commit
from contracts.sdk import Call, Contract
from node import merkle, sigcheck
from node.block import (
    BLOCK_VERSION_SIGNED,
    ZERO_HASH,
    Block,
    BlockError,
    Header,
    compute_last_commit_hash,
    compute_txs_root,
    result_leaf_from_encoded,
)
from node.execution import (
    EncodedReceipts,
    MemberLookup,
    Receipt,
    block_member_lookup,
    encoded_receipts,
    execute_call,
)
from node.state import Overlay
from node.state_tree import StateDelta, StateTree
from node.store import LedgerStore
from node.tx import E_BAD_SIGNATURE, Transaction, TxError
from node.verified_signatures import VerifiedSignatures

CommitVerifier = Callable[[int, bytes, Any], None]
"""``verify(height, block_hash, certificate)`` raises if the certificate is not valid."""


def certificate_verifier(chain_id: str, vset: ValidatorSet,
                         known: VerifiedSignatures | None = None) -> CommitVerifier:
    """The :data:`CommitVerifier` of a validator set: a certificate must be for exactly
    this height and block, and carry a quorum of valid precommits. With ``known`` (the
    signatures the consensus core checked as votes), a precommit checked as a vote is not
    checked again (node/verified_signatures.py)."""
    check = known.check if known is not None else canonical.verify_raw

    def verify(height: int, block_hash: bytes, cert: Any) -> None:
        commit = Commit.from_obj(cert)
        if commit.height != height or commit.block_hash != block_hash:
            raise ValueError("certificate is for another block")
        verify_commit(chain_id, vset, commit, check)

    return verify


@dataclass(frozen=True)
class ExecutionResult:
    receipts: Sequence[Receipt]  # a tuple, or EncodedReceipts for a result from a diff
    state_writes: Mapping[bytes, bytes | None]
    delta: StateDelta
    results_root: bytes
    executed: bool = True
    """False for a result taken from a peer's diff (:meth:`Engine.apply_certified_diff`):
    such results are not passed on to other peers (an honest peer's diff may carry writes
    that change nothing, which the roots cannot reveal, and they should not spread)."""

    @property
    def state_root(self) -> bytes:
        return self.delta.root


class SignatureCache:
    """Transactions whose signatures this node has already verified.

    Signature checks are paid once per node per transaction (at mempool admission); a
    proposal carrying an already-checked transaction is not verified again. Bounded FIFO.

    Keyed by the transaction hash *and* the signature: the hash covers the signed body,
    not ``sig``. Keyed by the hash alone (as it once was), a proposer could send a
    transaction we had admitted with its signature swapped for garbage, the cache said
    "verified", and we stored bytes whose signature does not verify.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        # An OrderedDict, not a dict: evicting the oldest must not walk the cache. (It once
        # listed all 200,000 hashes per eviction: 1.5 ms per admission once a node had seen
        # that many transactions.)
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def key_of(tx: Transaction) -> bytes:
        """What one check vouches for: this body (its hash) with this signature."""
        return tx.hash + tx.sig

    def __contains__(self, key: bytes) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def verified(self, tx: Transaction) -> bool:
        return self.key_of(tx) in self._seen

    def add(self, key: bytes) -> None:
        self._seen[key] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def check(self, tx: Transaction, chain_id: str) -> None:
        """Full check unless already verified (raises TxError)."""
        tx.validate_basic(chain_id)  # the shape first (cached): ``sig`` is then 64 bytes
        key = self.key_of(tx)
        if key in self._seen:
            return
        tx.check(chain_id)
        self.add(key)

    def begin(self, txs: Sequence[Transaction], chain_id: str) -> PendingSignatures:
        """Start checking those of ``txs`` not verified yet, off this thread where that
        pays (node/sigcheck.py); :meth:`PendingSignatures.finish` collects the verdicts.

        The shape of every transaction is checked here, at once (raises TxError).
        """
        unchecked: list[Transaction] = []
        for tx in txs:
            tx.validate_basic(chain_id)
            if self.key_of(tx) not in self._seen:
                unchecked.append(tx)
        verdicts = sigcheck.start([(tx.signer, tx.signed_bytes, tx.sig) for tx in unchecked])
        return PendingSignatures(self, unchecked, verdicts)

    def vouched(self, txs: Sequence[Transaction], chain_id: str) -> PendingSignatures:
        """Nothing to check: a verified certificate whose header pins the signature bytes
        (block version 2) says a quorum, so at least one honest validator, checked them
        before voting. Only the shape of each transaction is checked (raises TxError)."""
        for tx in txs:
            tx.validate_basic(chain_id)
        return PendingSignatures(self, [], sigcheck.start([]))


class PendingSignatures:
    """Signature checks under way for one block (see :meth:`SignatureCache.begin`)."""

    def __init__(self, cache: SignatureCache, txs: list[Transaction],
                 verdicts: sigcheck.Verdicts) -> None:
        self._cache = cache
        self._txs = txs
        self._verdicts = verdicts
        self._finished = False

    @property
    def ready(self) -> bool:
        """True if the verdicts are in already (they were checked on this thread)."""
        return self._verdicts.ready

    def cancel(self) -> None:
        """The block failed another check: stop checking what is still unchecked."""
        self._verdicts.cancel()

    def finish(self) -> None:
        """Wait for the verdicts; remember the good ones, raise BlockError for the first
        bad one in block order. Once it has passed, calling it again does nothing."""
        if self._finished:
            return
        for tx, ok in zip(self._txs, self._verdicts.wait(), strict=True):
            if not ok:
                raise BlockError(f"invalid transaction {tx.hash.hex()[:16]}: {E_BAD_SIGNATURE}:"
                                 " signature does not verify for this signer and body")
            self._cache.add(self._cache.key_of(tx))
        self._finished = True


class Engine:
    """Executes blocks for one node over its store and in-memory state tree."""

    def __init__(
        self,
        *,
        chain_id: str,
        contracts: Mapping[str, Contract],
        store: LedgerStore,
        tree: StateTree,
        validators_hash: bytes,
        validators: Sequence[bytes],
        max_block_txs: int,
        max_block_bytes: int,
        block_version: int,
        verify_commit: CommitVerifier | None = None,
        sig_cache: SignatureCache | None = None,
        is_prechecked: Callable[[bytes], bool] | None = None,
        committed_members: MemberLookup | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.contracts = contracts
        self.store = store
        self.tree = tree
        self.validators_hash = validators_hash
        self.validators = set(validators)
        self.max_block_txs = max_block_txs
        self.max_block_bytes = max_block_bytes
        self.block_version = block_version
        self.verify_commit = verify_commit
        # `is None`, not `or`: an empty cache has len() 0 and is falsy, and `or` once swapped
        # the node's shared (still empty at start) cache for a private one, so the mempool
        # and block validation each verified ~70% of transactions: two Ed25519 checks per tx.
        self.sig_cache = SignatureCache() if sig_cache is None else sig_cache
        # Transactions whose contract check already passed on this node (its mempool).
        # They are also known not to be committed (:meth:`_is_committed`), and that is a
        # safety matter, not only speed: a hook answering True for a committed hash turns
        # off the replay check for it, so whatever backs it must drop a block's hashes as
        # soon as the block commits (the node's driver does, first thing after commit).
        self.is_prechecked = is_prechecked or (lambda tx_hash: False)
        # Member lookups over this store's committed state, remembered per height (the
        # node shares the mempool's); None reads every signer's record for every call.
        self.committed_members = committed_members
        # Block hash -> (the bytes of the block that passed every check, its result). The
        # bytes matter under block version 1: the hash covers transaction bodies, not
        # signatures, so two blocks with one hash may differ in signature bytes, and only
        # the checked one may be committed without checking again (see commit).
        self._results: dict[bytes, tuple[bytes, ExecutionResult]] = {}
        # The execution of an announced block, run before its proposal arrived
        # (:meth:`speculate`): ((tip hash, height, time, tx hashes), its result).
        self._speculated: tuple[tuple[bytes, int, int, tuple[bytes, ...]],
                                ExecutionResult] | None = None
        self.speculations_used = 0
        self._tip: tuple[int, bytes, int] | None = None

    # --- the chain tip ----------------------------------------------------------------------

    def tip(self) -> tuple[int, bytes, int]:
        """(height, block hash, block time) of the last committed block (0, zeros, 0).

        Remembered after each commit: reading and decoding the last block from disk for every
        proposal and every validation showed up in profiles. Read from the header alone
        (after a restart, the first time): its transactions are not needed.
        """
        height = self.store.height
        if self._tip is not None and self._tip[0] == height:
            return self._tip
        if height == 0:
            return 0, ZERO_HASH, 0
        header = self.store.get_header(height)
        if header is None:
            raise BlockError(f"store claims height {height} but has no block")
        self._tip = (height, header.hash, header.time_ms)
        return self._tip

    # --- execution --------------------------------------------------------------------------

    def execute_txs(self, height: int, time_ms: int, txs: Sequence[Transaction]) -> ExecutionResult:
        """Run ``txs`` in order on an overlay of committed state; nothing is written."""
        block_overlay = Overlay(self.store.state)
        lookup = (None if self.committed_members is None
                  else block_member_lookup(block_overlay, self.committed_members))
        receipts: list[Receipt] = []
        for tx in txs:
            call = Call(tx.contract, tx.action, tx.args, tx.signer, tx.nonce, tx.hash)
            receipts.append(
                execute_call(self.contracts, block_overlay, chain_id=self.chain_id,
                             height=height, time_ms=time_ms, call=call,
                             prechecked=self.is_prechecked(tx.hash), lookup_member=lookup)
            )
        delta = self.tree.preview(block_overlay.writes, self.store.leaves)
        results_root = merkle.merkle_root(
            [result_leaf_from_encoded(tx.hash, r.encoded)
             for tx, r in zip(txs, receipts, strict=True)]
        )
        return ExecutionResult(tuple(receipts), dict(block_overlay.writes), delta, results_root)

    def speculate(self, height: int, time_ms: int, txs: Sequence[Transaction], *,
                  now_ms: int | None = None, max_future_ms: int = 30_000) -> bool:
        """Execute ``txs`` as the block of ``height`` at ``time_ms`` ahead of its proposal;
        :meth:`validate_block` takes the result instead of executing a block with exactly
        these inputs. False (and nothing run) unless ``height`` is the next one.

        Why: a proposer executes its block before it can send it (the header carries the
        roots), and the validators then execute it again, one after the other: on a
        machine the nodes share, the other cores idle through the proposer's part. Told the
        transactions and the time first (the driver's announcement), validators execute
        alongside it. Sound because execution is a pure function of the committed state
        (pinned by the tip's hash), the height, the time and the transactions' signed
        bodies (pinned by their hashes); the roots are compared with the header's as
        always, and anything else about the block is checked as always.

        The time is bounded as a proposal's is (``now_ms + max_future_ms``): an
        announcement is not signed, and a Byzantine proposer's ``time`` of 2**63 once made
        a contract's date arithmetic overflow on every node holding its transactions.
        """
        tip_height, tip_hash, prev_time = self.tip()
        if height != tip_height + 1 or time_ms <= prev_time:
            return False
        if now_ms is not None and time_ms > now_ms + max_future_ms:
            return False
        key = (tip_hash, height, time_ms, tuple(tx.hash for tx in txs))
        self._speculated = (key, self.execute_txs(height, time_ms, txs))
        return True

    def _speculated_result(self, block: Block) -> ExecutionResult | None:
        """The speculative result for exactly this block's inputs, if there is one."""
        if self._speculated is None:
            return None
        key, result = self._speculated
        header = block.header
        if (key[0] != header.prev_hash or key[1] != header.height or key[2] != header.time_ms
                or key[3] != tuple(tx.hash for tx in block.txs)
                or key[0] != self.tip()[1]):
            return None
        self.speculations_used += 1
        return result

    def build_block(
        self, *, proposer: bytes, time_ms: int, txs: Sequence[Transaction], last_commit: Any
    ) -> Block:
        """The proposer's candidate for the next height, with its roots filled in."""
        height, prev_hash, prev_time = self.tip()
        time_ms = max(time_ms, prev_time + 1)
        chosen = self.admissible(txs)
        result = self.execute_txs(height + 1, time_ms, chosen)
        header = Header(
            chain_id=self.chain_id,
            height=height + 1,
            time_ms=time_ms,
            prev_hash=prev_hash,
            proposer=proposer,
            txs_root=compute_txs_root(chosen, self.block_version),
            state_root=result.state_root,
            results_root=result.results_root,
            last_commit_hash=compute_last_commit_hash(last_commit),
            validators_hash=self.validators_hash,
        )
        block = Block(header, tuple(chosen), last_commit)
        self._results[block.hash] = (block.encoded, result)
        return block

    def _is_committed(self, tx_hash: bytes) -> bool:
        """Is ``tx_hash`` in a committed block? A hash the mempool holds is not: the
        mempool refuses committed hashes and drops a block's hashes when it commits (one
        event-loop step, nothing builds or validates in between), so only the others cost
        a LevelDB lookup. Before, a transaction cost one at admission and one more at each
        build and check of a block holding it (~2% of a node's CPU under load)."""
        return not self.is_prechecked(tx_hash) and self.store.has_tx(tx_hash)

    def admissible(self, txs: Sequence[Transaction]) -> list[Transaction]:
        """Drop duplicates and committed hashes and stay within the block limits."""
        chosen: list[Transaction] = []
        seen: set[bytes] = set()
        size = 0
        for tx in txs:
            if len(chosen) >= self.max_block_txs:
                break
            if tx.hash in seen or self._is_committed(tx.hash):
                continue
            if size + len(tx.encoded) > self.max_block_bytes:
                break
            seen.add(tx.hash)
            size += len(tx.encoded)
            chosen.append(tx)
        return chosen

    def validate_block(self, block: Block, *, now_ms: int | None = None,
                       max_future_ms: int = 30_000, certificate: Any = None) -> ExecutionResult:
        """Every check a validator makes before it prevotes; raises BlockError.

        Re-executes the transactions and compares the roots with the header. Block sync
        runs it too, with the block's ``certificate`` (verified here). Whether that spares
        the signature checks depends on the block version: under version 2 ``txs_root``
        covers each signature, so the certified header vouches for the very bytes sent
        (:meth:`SignatureCache.vouched`); under version 1 it covers the signed bodies but
        not the signatures, so a certificate says nothing about the signature bytes a sync
        peer sends, and every one is checked (the signature cache keeps this to one check
        per transaction: a block proposed to us was checked when it was proposed).
        """
        cached = self._results.get(block.hash)
        if certificate is not None:
            self._verify_certificate(block, certificate)
        signatures = self._check_block(block, now_ms=now_ms, max_future_ms=max_future_ms,
                                       certified=certificate is not None)
        header = block.header
        try:
            if signatures.ready:  # known already: a bad one costs no execution
                signatures.finish()
            # The same bodies give the same execution whatever the signature bytes; the
            # signatures of these bytes are checked all the same (above, finished below).
            result = cached[1] if cached is not None else self._speculated_result(block)
            if result is None:
                result = self.execute_txs(header.height, header.time_ms, block.txs)
            signatures.finish()  # checked meanwhile on another core where that pays
        except BaseException:
            signatures.cancel()
            raise
        # Verify the roots the proposer claims are the ones we compute.
        if result.state_root != header.state_root:
            raise BlockError("state_root differs from re-execution")
        if result.results_root != header.results_root:
            raise BlockError("results_root differs from re-execution")
        self._results[block.hash] = (block.encoded, result)
        return result

    def apply_certified_diff(self, block: Block, certificate: Any, receipts: list[Any],
                             writes: Mapping[Any, Any]) -> ExecutionResult:
        """A certified block's result from the state writes and receipts a peer sent with
        it, without executing it (catch-up; raises BlockError).

        ``certificate`` must verify for this very block (checked here, not left to the
        caller: without execution it is the only proof the header's roots are right): a
        quorum of validators, so at least one honest one, executed the block and signed its
        header, which commits to ``state_root`` (the state after the block) and
        ``results_root`` (its receipts). The writes are applied to a preview of the state
        tree and must give exactly ``state_root``: a write left out or altered, or a new
        key, changes the root (every key and value is hashed into it), so a peer cannot
        make us store a state other than the one the quorum computed. (Writes that change
        nothing, such as deleting an absent key, leave the root as it is; they cost only
        their hashing, are bounded by the message size, and are not passed on.) Receipts
        are checked against ``results_root`` the same way. Every check of
        :meth:`validate_block` but execution runs as well.
        """
        self._verify_certificate(block, certificate, what="diff: ")
        signatures = self._check_block(block, certified=True)  # see validate_block
        try:
            result = self._result_from_diff(block, receipts, writes)
            signatures.finish()
        except BaseException:
            signatures.cancel()  # the block is executed next: no use checking these twice
            raise
        self._results[block.hash] = (block.encoded, result)
        return result

    def _result_from_diff(self, block: Block, receipts: list[Any],
                          writes: Mapping[Any, Any]) -> ExecutionResult:
        """The checks of :meth:`apply_certified_diff` on the diff itself."""
        header = block.header
        if not isinstance(receipts, list) or len(receipts) != len(block.txs):
            raise BlockError("diff: one receipt per transaction expected")
        if not all(type(raw) is bytes for raw in receipts):
            raise BlockError("diff: receipts must be bytes")
        # The root first, from the bytes as sent: each leaf is fixed bytes around the
        # receipt's bytes, so a match means these are the very bytes the quorum's honest
        # members encoded canonically and hashed, and they are decoded without checking
        # their form again (that re-encoding was ~10% of a catch-up's CPU).
        results_root = merkle.merkle_root(
            [result_leaf_from_encoded(tx.hash, raw)
             for tx, raw in zip(block.txs, receipts, strict=True)]
        )
        if results_root != header.results_root:
            raise BlockError("diff: receipts do not match results_root")
        for key, value in writes.items():
            if type(key) is not bytes or not (value is None or type(value) is bytes):
                raise BlockError("diff: writes must map bytes to bytes or nil")
        state_writes: dict[bytes, bytes | None] = dict(writes)
        delta = self.tree.preview(state_writes, self.store.leaves)
        if delta.root != header.state_root:
            raise BlockError("diff: writes do not give the block's state_root")
        # Stored as the bytes they are, decoded only where read (EncodedReceipts).
        return ExecutionResult(EncodedReceipts(receipts), state_writes, delta, results_root,
                               executed=False)

    def _verify_certificate(self, block: Block, certificate: Any, what: str = "") -> None:
        """Raise BlockError unless ``certificate`` is a quorum's for this very block."""
        if self.verify_commit is None:
            raise BlockError(f"{what}no certificate verifier configured")
        try:
            self.verify_commit(block.height, block.hash, certificate)
        except Exception as exc:  # any failure of the remote certificate is theirs
            raise BlockError(f"{what}certificate does not verify: {exc}") from None

    def _check_block(self, block: Block, *, now_ms: int | None = None,
                     max_future_ms: int = 30_000, certified: bool = False) -> PendingSignatures:
        """Every check of :meth:`validate_block` that needs no execution; the signature
        checks are started, and the caller finishes them before it trusts the block.

        ``certified``: the caller verified a certificate for this block hash. Only then may
        a block version that pins signatures spare their checks, and only then is the
        replay check (no transaction committed before) left out: a quorum signed the
        header, so at least one honest validator ran that check against this very chain
        (``prev_hash`` pins it) and ``txs_root`` pins the hashes it checked. In block sync
        that check was a LevelDB read per transaction, each one waiting first for the
        previous block's write in the background (``LedgerStore.settle``): ~5% of a
        catch-up, and the reason the next block's state-tree work could not overlap that
        write."""
        header = block.header
        if block.__dict__.get("needs_certificate") and not certified:
            # Decoded for block sync (Block.decode(synced=True)): its transactions' form
            # is vouched for by nothing but the certificate. A bug in the caller, never
            # data: refuse rather than trust unchecked bytes.
            raise BlockError("a synced block is taken only with its certificate")
        height, prev_hash, prev_time = self.tip()
        # Verify the block extends our chain.
        if header.chain_id != self.chain_id:
            raise BlockError(f"block is for chain {header.chain_id!r}")
        if header.height != height + 1:
            raise BlockError(f"block height {header.height}, expected {height + 1}")
        if header.prev_hash != prev_hash:
            raise BlockError("block does not extend the last committed block")
        if header.time_ms <= prev_time:
            raise BlockError("block time does not advance")
        if now_ms is not None and header.time_ms > now_ms + max_future_ms:
            raise BlockError("block time is too far in the future")
        if header.proposer not in self.validators:
            raise BlockError("proposer is not a validator")
        if header.validators_hash != self.validators_hash:
            raise BlockError("validators_hash does not match the validator set")
        # Verify the previous block's certificate carried in this one.
        if header.last_commit_hash != compute_last_commit_hash(block.last_commit):
            raise BlockError("last_commit_hash does not match last_commit")
        if height == 0 and block.last_commit is not None:
            raise BlockError("the first block carries no certificate")
        if height >= 1:
            if block.last_commit is None:
                raise BlockError("block must carry the previous block's certificate")
            if self.verify_commit is not None:
                try:
                    self.verify_commit(height, prev_hash, block.last_commit)
                except Exception as exc:  # any failure of the remote certificate is theirs
                    raise BlockError(f"last_commit does not verify: {exc}") from None
        # Verify the transactions: limits, uniqueness, signatures.
        if len(block.txs) > self.max_block_txs:
            raise BlockError("too many transactions")
        if sum(len(tx.encoded) for tx in block.txs) > self.max_block_bytes:
            raise BlockError("block too large")
        if header.txs_root != compute_txs_root(block.txs, self.block_version):
            raise BlockError("txs_root does not match the transactions")
        hashes = [tx.hash for tx in block.txs]
        if len(set(hashes)) != len(hashes):
            raise BlockError("duplicate transaction in block")
        if not certified and any(map(self._is_committed, hashes)):
            raise BlockError("block replays a committed transaction")
        try:
            if certified and self.block_version == BLOCK_VERSION_SIGNED:
                return self.sig_cache.vouched(block.txs, self.chain_id)
            return self.sig_cache.begin(block.txs, self.chain_id)
        except TxError as exc:
            raise BlockError(f"invalid transaction in block: {exc}") from None

    def commit(self, block: Block, certificate: Any, *,
               background: bool = False) -> ExecutionResult:
        """Write a decided block (validated here if it was not already) in one batch.

        "Already" means these very bytes: a block with the same hash but other signature
        bytes than the one checked is checked now (regression: a proposer could have a
        validator check one copy and then hand it another with forged signatures).
        ``background``: the batch is written on another thread (block sync; see
        :meth:`LedgerStore.commit_block`).
        """
        checked = self._results.get(block.hash)
        if checked is not None and (checked[0] is block.encoded
                                    or checked[0] == block.encoded):
            result = checked[1]
        else:
            result = self.validate_block(block)
        self.store.commit_block(block, certificate, encoded_receipts(result.receipts),
                                result.state_writes, result.delta, background=background)
        self.tree.apply(result.delta)
        self._results.clear()
        self._speculated = None
        self._tip = (block.height, block.hash, block.header.time_ms)
        return result

