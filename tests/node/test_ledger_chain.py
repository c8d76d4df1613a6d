"""Done-when of the foundation: 100 committed blocks verify from a reopened store alone."""

from __future__ import annotations

import pytest

from consensus import canonical
from consensus.types import Commit, ValidatorSet, verify_commit
from node import merkle
from node.block import (
    BLOCK_VERSION_HASHES,
    BLOCK_VERSION_SIGNED,
    compute_last_commit_hash,
    compute_txs_root,
    result_leaf,
)
from node.state import state_key
from node.state_tree import verify_state_proof
from node.tx import Transaction

from ledger_support import (
    CHAIN_ID,
    T0,
    add_member_tx,
    certify,
    make_genesis,
    open_engine,
    seed_key,
)


def build_chain(path: str, blocks: int, txs_per_block: int) -> list[Transaction]:
    genesis = make_genesis()
    store, engine = open_engine(path, genesis)
    validator, admin = seed_key("v0"), seed_key("admin")
    last_commit = None
    all_txs: list[Transaction] = []
    for h in range(1, blocks + 1):
        txs = [add_member_tx(admin, f"m{h}-{i}", h * 1000 + i) for i in range(txs_per_block)]
        if h % 10 == 0:  # a rejected transaction is recorded too, with its code
            txs.append(Transaction.create(admin, CHAIN_ID, "membership", "revoke_member",
                                          {"pubkey": "00" * 32}, h))
        block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + h * 1000,
                                   txs=txs, last_commit=last_commit)
        engine.validate_block(block)
        cert = certify(h, block.hash, [validator])
        engine.commit(block, cert)
        last_commit = cert
        all_txs.extend(txs)
    store.close()
    return all_txs


def test_hundred_blocks_verify_after_reopen(tmp_path):
    path = str(tmp_path / "data")
    txs = build_chain(path, blocks=100, txs_per_block=5)
    genesis = make_genesis()
    store, engine = open_engine(path, genesis)
    vset = ValidatorSet(tuple(genesis.validator_pubkeys()))
    assert store.height == 100
    prev_hash = b"\x00" * 32
    for h in range(1, 101):
        block = store.get_block(h)
        assert block is not None and block.height == h
        assert block.header.prev_hash == prev_hash
        # Each block verifies alone with its stored certificate.
        commit = Commit.from_obj(store.get_commit(h))
        assert commit.block_hash == block.hash
        verify_commit(CHAIN_ID, vset, commit)
        assert block.header.txs_root == compute_txs_root(block.txs, BLOCK_VERSION_SIGNED)
        assert block.header.last_commit_hash == compute_last_commit_hash(block.last_commit)
        receipts = store.receipts_of(h)
        pairs = zip(block.txs, receipts, strict=True)
        leaves = [result_leaf(tx.hash, r.to_obj()) for tx, r in pairs]
        for i, leaf in enumerate(leaves):
            proof = merkle.inclusion_proof(leaves, i)
            assert merkle.verify_inclusion(leaf, i, len(leaves), proof, block.header.results_root)
        prev_hash = block.hash
    # Every transaction is indexed; rejected ones kept their code.
    codes = {}
    for tx in txs:
        height, index = store.tx_location(tx.hash)
        codes[tx.action] = store.get_receipt(height, index).code
    assert codes == {"add_member": "OK", "revoke_member": "E_NOT_FOUND"}
    # State proofs verify against the last block's state_root (a present and an absent key).
    root = store.get_block(100).header.state_root
    assert engine.tree.root == root
    key = state_key("membership", f"key/{seed_key('m57-3').verify_key.encode().hex()}")
    value = store.get_state(key)
    assert value is not None and canonical.decode(value)["label"] == "m57-3"
    assert verify_state_proof(root, key, value, engine.tree.prove(key, store.leaves))
    absent = state_key("membership", "key/" + "ab" * 32)
    assert verify_state_proof(root, absent, None, engine.tree.prove(absent, store.leaves))
    assert not verify_state_proof(root, key, b"forged", engine.tree.prove(key, store.leaves))
    store.close()


def test_same_block_on_two_stores_gives_identical_roots(tmp_path):
    genesis = make_genesis()
    store_a, engine_a = open_engine(str(tmp_path / "a"), genesis)
    store_b, engine_b = open_engine(str(tmp_path / "b"), genesis)
    admin, validator = seed_key("admin"), seed_key("v0")
    txs = [add_member_tx(admin, f"x{i}", i) for i in range(20)]
    block = engine_a.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                                 txs=txs, last_commit=None)
    result = engine_b.validate_block(block)
    assert result.state_root == block.header.state_root
    assert result.results_root == block.header.results_root
    store_a.close()
    store_b.close()


def test_transaction_failing_its_check_gets_the_failure_code_in_a_block(tmp_path):
    """A proposer may include a transaction our mempool never admitted: it is checked."""
    genesis = make_genesis()
    _, engine_a = open_engine(str(tmp_path / "a"), genesis)
    _, engine_b = open_engine(str(tmp_path / "b"), genesis)
    engine_b.is_prechecked = lambda tx_hash: False
    admin, validator = seed_key("admin"), seed_key("v0")
    bad = Transaction.create(admin, CHAIN_ID, "membership", "add_member", {"pubkey": "xyz"}, 1)
    good = add_member_tx(admin, "fine", 2)
    engine_a.is_prechecked = {good.hash}.__contains__
    block = engine_a.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                                 txs=[bad, good], last_commit=None)
    result = engine_b.validate_block(block)
    assert [r.code for r in result.receipts] == ["E_ARGS", "OK"]


def test_a_synced_block_still_fails_on_wrong_state_root(tmp_path):
    """Block sync re-executes (when it has no diff) and compares the roots: a block with a
    wrong root is refused, whatever certificate came with it."""
    from dataclasses import replace

    import pytest

    from node.block import Block, BlockError

    genesis = make_genesis()
    _, engine_a = open_engine(str(tmp_path / "a"), genesis)
    _, engine_b = open_engine(str(tmp_path / "b"), genesis)
    admin, validator = seed_key("admin"), seed_key("v0")
    block = engine_a.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                                 txs=[add_member_tx(admin, "x", 1)], last_commit=None)
    forged = Block(replace(block.header, state_root=b"\x01" * 32), block.txs, None)
    with pytest.raises(BlockError, match="state_root"):
        engine_b.validate_block(forged)
    assert engine_b.validate_block(block).state_root == block.header.state_root


@pytest.mark.parametrize("count", [2, 40])  # 40: checked on the worker thread (sigcheck)
def test_a_certified_block_whose_transaction_signature_was_swapped_is_refused(tmp_path, count):
    """Regression: block sync skipped signature checks on certified blocks, reasoning that
    the quorum had checked them. But under block version 1 a transaction's hash (and so
    ``txs_root``, and so the certified header) covers its signed body, not its signature:
    a sync peer could swap a signature for garbage, and the block, its certificate and its
    roots still checked out. The node then stored and served transactions whose signatures
    do not verify. Both ways a synced block is taken (executed, or from a diff) must
    refuse it: by checking the signature under version 1, by ``txs_root`` under version 2
    (where the signatures are then not checked again)."""
    import os
    from dataclasses import replace

    from node import sigcheck
    from node.block import Block, BlockError
    from node.recent_diffs import RecentDiffs, diff_from_wire

    if count >= sigcheck.MIN_BACKGROUND and (sigcheck._compiled or os.environ.get("CI")):
        assert sigcheck.background_checks(), "this case is meant for the worker thread"
    for version, refusal in ((BLOCK_VERSION_HASHES, "signature"),
                             (BLOCK_VERSION_SIGNED, "txs_root")):
        genesis = make_genesis(block_version=version)
        _, source = open_engine(str(tmp_path / f"source-{version}"), genesis)
        admin, validator = seed_key("admin"), seed_key("v0")
        block = source.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                                   txs=[add_member_tx(admin, f"m{i}", i) for i in range(count)],
                                   last_commit=None)
        cert = certify(1, block.hash, [validator])
        result = source.commit(block, cert)
        diffs = RecentDiffs()
        diffs.remember(1, result.state_writes, result.receipts)

        victim = block.txs[-1]
        forged_tx = replace(victim, sig=bytes(64))  # same body, so the same hash
        assert forged_tx.hash == victim.hash and forged_tx.encoded != victim.encoded
        forged = Block.decode(Block(block.header, (*block.txs[:-1], forged_tx), None).encoded)
        assert forged.hash == block.hash  # the certificate still fits its header

        for name in ("executed", "from its diff"):
            path = tmp_path / f"{version}-{name.replace(' ', '-')}"
            store, target = open_engine(str(path), genesis)
            with pytest.raises(BlockError, match=refusal):
                if name == "executed":
                    target.validate_block(forged, certificate=cert)
                else:
                    receipts, writes = diff_from_wire(diffs.wire(1))
                    target.apply_certified_diff(forged, cert, receipts, writes)
            # The genuine block still goes through either way.
            if name == "executed":
                target.validate_block(Block.decode(block.encoded), certificate=cert)
            else:
                receipts, writes = diff_from_wire(diffs.wire(1))
                target.apply_certified_diff(Block.decode(block.encoded), cert, receipts, writes)
            target.commit(Block.decode(block.encoded), cert)
            assert store.get_block_bytes(1) == block.encoded
            store.close()


def _count_signature_checks(monkeypatch) -> list[int]:
    """Patch every path an Ed25519 check of a transaction takes; the list counts them."""
    from node import sigcheck
    from node.tx import Transaction as Tx

    calls = [0]
    start, check = sigcheck.start, Tx.check

    def counting_start(items):
        calls[0] += len(items)
        return start(items)

    def counting_check(self, chain_id):
        calls[0] += 1
        return check(self, chain_id)

    monkeypatch.setattr(sigcheck, "start", counting_start)
    monkeypatch.setattr(Tx, "check", counting_check)
    return calls


@pytest.mark.parametrize("version", [BLOCK_VERSION_HASHES, BLOCK_VERSION_SIGNED])
def test_synced_blocks_skip_signature_checks_only_where_the_certificate_pins_them(
        tmp_path, monkeypatch, version):
    """Block version 2 puts each signature under ``txs_root``, so a verified certificate
    vouches for the signature bytes and catch-up skips ~half its CPU. Without the
    certificate (a proposal) and under version 1, every signature is still checked."""
    from node.block import Block
    from node.recent_diffs import RecentDiffs, diff_from_wire

    genesis = make_genesis(block_version=version)
    _, source = open_engine(str(tmp_path / "source"), genesis)
    admin, validator = seed_key("admin"), seed_key("v0")
    block = source.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                               txs=[add_member_tx(admin, f"m{i}", i) for i in range(30)],
                               last_commit=None)
    cert = certify(1, block.hash, [validator])
    result = source.commit(block, cert)
    diffs = RecentDiffs()
    diffs.remember(1, result.state_writes, result.receipts)
    calls = _count_signature_checks(monkeypatch)
    expected = 0 if version == BLOCK_VERSION_SIGNED else 30

    _, executed = open_engine(str(tmp_path / "executed"), genesis)
    executed.validate_block(Block.decode(block.encoded), certificate=cert)
    assert calls[0] == expected
    _, from_diff = open_engine(str(tmp_path / "diff"), genesis)
    receipts, writes = diff_from_wire(diffs.wire(1))
    from_diff.apply_certified_diff(Block.decode(block.encoded), cert, receipts, writes)
    assert calls[0] == 2 * expected
    _, proposed = open_engine(str(tmp_path / "proposed"), genesis)
    proposed.validate_block(Block.decode(block.encoded))  # no certificate: a proposal
    assert calls[0] == 2 * expected + 30


def test_a_synced_block_with_a_certificate_for_another_block_is_refused(tmp_path):
    """The certificate handed to validate_block is verified there: it must be a quorum's
    for this very block, or the signatures it would spare are checked by nobody."""
    from node.block import Block, BlockError

    genesis = make_genesis()
    _, source = open_engine(str(tmp_path / "source"), genesis)
    admin, validator = seed_key("admin"), seed_key("v0")
    block = source.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                               txs=[add_member_tx(admin, "m", 1)], last_commit=None)
    _, target = open_engine(str(tmp_path / "target"), genesis)
    for cert in (certify(1, b"\x07" * 32, [validator]),  # another block
                 certify(1, block.hash, [seed_key("stranger")]),  # not the validators
                 {"nonsense": True}):
        with pytest.raises(BlockError, match="certificate"):
            target.validate_block(Block.decode(block.encoded), certificate=cert)
    target.validate_block(Block.decode(block.encoded), certificate=certify(1, block.hash,
                                                                           [validator]))


def full_blocks(path: str, count: int = 8):
    """A chain of ``count`` blocks of ~1 MiB each (oversized args: recorded as failures)."""
    genesis = make_genesis()
    store, engine = open_engine(path, genesis)
    validator, admin = seed_key("v0"), seed_key("admin")
    last_commit = None
    for h in range(1, count + 1):
        txs = [Transaction.create(admin, CHAIN_ID, "membership", "add_member",
                                  {"pubkey": "00" * 32, "label": "x" * 60_000}, h * 100 + i)
               for i in range(17)]
        block = engine.build_block(proposer=validator.verify_key.encode(),
                                   time_ms=T0 + h * 1000, txs=txs, last_commit=last_commit)
        assert len(block.encoded) > 1_000_000
        last_commit = certify(h, block.hash, [validator])
        engine.commit(block, last_commit)
    return store


def serve_all(store, diffs=None) -> list:
    """Every sync answer from height 1, each checked to fit one message."""
    from node.driver import sync_batch

    served, start = [], 1
    while start <= store.height:
        items = sync_batch(store, start, diffs)
        assert items, "every response carries at least one block"
        assert len(canonical.encode({"t": "blocks", "items": items})) \
            <= canonical.MAX_MESSAGE_BYTES
        served.extend(items)
        start += len(items)
    return served


def test_sync_responses_of_full_blocks_fit_one_message(tmp_path):
    """Regression: the sync budget (6 MiB) exceeded the 4 MiB message limit, so a node
    serving full blocks could not encode its answer and a wiped node never caught up."""
    store = full_blocks(str(tmp_path / "data"))
    served = serve_all(store)
    assert [raw for raw, _ in served] == [store.get_block_bytes(h) for h in range(1, 9)]
    store.close()


def test_sync_answers_carry_diffs_that_fit_and_leave_out_the_others(tmp_path):
    from node.recent_diffs import RecentDiffs

    store = full_blocks(str(tmp_path / "data"))
    diffs = RecentDiffs()
    for h in range(1, 9):  # odd heights: a diff too big to travel beside its 1 MiB block
        size = 3_300_000 if h % 2 else 1000
        diffs.remember(h, {b"k%d" % h: b"v" * size}, store.receipts_of(h))
    served = serve_all(store, diffs)
    assert [item[0] for item in served] == [store.get_block_bytes(h) for h in range(1, 9)]
    assert [len(item) for item in served] == [2, 3] * 4
    assert all(item[2] == diffs.wire(h) for h, item in enumerate(served, 1) if len(item) == 3)
    store.close()


def test_a_diff_that_cannot_fit_even_alone_does_not_end_an_answer(tmp_path):
    """Regression: the answer ended before a block whose diff was too big for any answer,
    so the next answer sent that block without it anyway: one answer (a round trip and a
    serving token) wasted for each such block."""
    from node.driver import sync_batch
    from node.recent_diffs import RecentDiffs

    store = full_blocks(str(tmp_path / "data"), count=3)
    diffs = RecentDiffs()
    for h in range(1, 4):  # height 2: a diff that no answer could carry beside its block
        diffs.remember(h, {b"k%d" % h: b"v" * (3_300_000 if h == 2 else 1000)},
                       store.receipts_of(h))
    first = sync_batch(store, 1, diffs)
    assert [len(item) for item in first] == [3, 2, 3]
    assert [item[0] for item in first] == [store.get_block_bytes(h) for h in range(1, 4)]
    store.close()


def test_a_call_whose_events_cannot_be_recorded_fails_alone(tmp_path):
    """Regression: an event a contract emitted that is not canonical (a float, or nested
    too deep for its results leaf) made block building raise, halting the chain. Now the
    call fails with E_ENCODING, leaves no writes, and the block commits."""
    from contracts.sdk import Contract
    from node.block import result_leaf

    class Emitter(Contract):
        name = "emitter"
        version = "1"

        def check(self, call):
            pass

        def apply(self, ctx, call):
            ctx.state.put("touched", 1)
            value = 1.5 if call.args["kind"] == "float" else 0
            for _ in range(call.args.get("depth", 0)):
                value = [value]
            ctx.emit("e", {"v": value})

        def query(self, ctx, name, args):
            return None

    genesis = make_genesis()
    store, engine = open_engine(str(tmp_path / "data"), genesis)
    engine.contracts = {**engine.contracts, "emitter": Emitter()}
    validator, admin = seed_key("v0"), seed_key("admin")
    txs = [Transaction.create(admin, CHAIN_ID, "emitter", "go", args, i) for i, args in
           enumerate([{"kind": "float"}, {"kind": "deep", "depth": 29},
                      {"kind": "ok", "depth": 28}])]
    block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1000,
                               txs=txs, last_commit=None)
    engine.commit(block, certify(1, block.hash, [validator]))
    codes = [r.code for r in store.receipts_of(1)]
    assert codes == ["E_ENCODING", "E_ENCODING", "OK"]
    receipt = store.receipts_of(1)[2]
    assert result_leaf(txs[2].hash, receipt.to_obj())  # the deepest allowed still encodes
    assert store.get_state(b"emitter/touched") is not None  # only the good call wrote
    store.close()


def test_a_block_whose_diff_does_not_fit_starts_the_next_answer_with_it(tmp_path):
    """Regression: a block whose held diff did not fit beside the blocks already in a sync
    answer was sent alone, so the receiver executed it (~3× the CPU of applying the diff):
    with full blocks, two of every three. Now it starts the next answer, with its diff."""
    from node.recent_diffs import RecentDiffs

    store = full_blocks(str(tmp_path / "data"))
    diffs = RecentDiffs(max_bytes=64 * 1024 * 1024)
    for h in range(1, 9):  # 1 MiB block + 1.5 MB diff: one pair per 4 MiB answer
        diffs.remember(h, {b"k%d" % h: b"v" * 1_500_000}, store.receipts_of(h))
    served = serve_all(store, diffs)
    assert [item[0] for item in served] == [store.get_block_bytes(h) for h in range(1, 9)]
    assert [len(item) for item in served] == [3] * 8  # every block with its diff
    assert all(item[2] == diffs.wire(h) for h, item in enumerate(served, 1))
    store.close()


def test_a_commit_that_fails_midway_writes_nothing(tmp_path, monkeypatch):
    """Regression: plyvel writes a batch even when its ``with`` block raises (unless asked
    for a transaction), so a commit failing halfway (a receipt that cannot be encoded, an
    out-of-memory) left the block's first records on disk: transaction index entries for a
    block never committed, after which those transactions were refused as "already
    committed" forever."""
    import pytest

    from node.execution import Receipt

    genesis = make_genesis()
    path = str(tmp_path / "data")
    store, engine = open_engine(path, genesis)
    admin, validator = seed_key("admin"), seed_key("v0")
    txs = [add_member_tx(admin, f"m{i}", i) for i in range(3)]
    block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                               txs=txs, last_commit=None)
    cert = certify(1, block.hash, [validator])
    calls = {"n": 0}
    original = Receipt.encoded.func  # the cached_property's function

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("simulated failure halfway through the batch")
        return original(self)

    result = engine._results[block.hash][1]
    for receipt in result.receipts:
        receipt.__dict__.pop("encoded", None)
    monkeypatch.setattr(Receipt, "encoded", property(failing))
    with pytest.raises(MemoryError):
        engine.commit(block, cert)
    monkeypatch.undo()
    assert store.height == 0
    assert not any(store.has_tx(tx.hash) for tx in txs)
    assert store.get_block_bytes(1) is None
    store.close()
    reopened, _ = open_engine(path, genesis)
    assert reopened.height == 0 and not any(reopened.has_tx(tx.hash) for tx in txs)
    reopened.close()


def test_bytes_a_block_hash_does_not_cover_are_refused(tmp_path):
    """From a review: a header with an extra field decoded to the same hash (the hash covers
    the known fields only), and the first block could carry any ``last_commit``: bytes
    that travel and are stored under a hash or certificate that does not vouch for them."""
    import pytest

    from node.block import Block, BlockError

    genesis = make_genesis()
    _, engine = open_engine(str(tmp_path / "a"), genesis)
    admin, validator = seed_key("admin"), seed_key("v0")
    block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                               txs=[add_member_tx(admin, "x", 1)], last_commit=None)
    obj = block.to_obj()
    padded = {**obj, "header": {**obj["header"], "note": "padding"}}
    with pytest.raises(BlockError, match="unknown fields"):
        Block.decode(canonical.encode(padded))
    # A proposer's first block with a made-up certificate (and a header that commits to it).
    _, other = open_engine(str(tmp_path / "c"), genesis)
    junk_commit = other.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                                    txs=[add_member_tx(admin, "x", 1)],
                                    last_commit={"junk": 1})
    _, fresh = open_engine(str(tmp_path / "b"), genesis)
    with pytest.raises(BlockError, match="first block"):
        fresh.validate_block(Block.decode(junk_commit.encoded))
