"""Transaction envelope: every malformed input has a stable code."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from consensus import canonical
from node.tx import Transaction, TxError, body_from_encoded
from tests.ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key

KEY = SigningKey(b"\x07" * 32)


def make(**over):
    tx = Transaction.create(KEY, "chain-a", "membership", "add_member", {"pubkey": "ab"}, 1)
    obj = tx.to_obj()
    obj.update(over)
    return obj


def test_signed_transaction_checks():
    tx = Transaction.from_obj(make())
    tx.check("chain-a")
    assert Transaction.decode(tx.encoded) == tx


def test_json_round_trip():
    tx = Transaction.from_obj(make())
    assert Transaction.from_json(tx.to_json()).hash == tx.hash


def test_hash_ignores_signature_so_resigning_is_a_replay():
    tx = Transaction.from_obj(make())
    other = Transaction.from_obj(make(sig=b"\x01" * 64))
    assert tx.hash == other.hash


@pytest.mark.parametrize("field,value,code", [
    ("chain_id", "", "E_MALFORMED_TX"),
    ("contract", "Bad Name", "E_MALFORMED_TX"),
    ("action", 5, "E_MALFORMED_TX"),
    ("args", [1], "E_MALFORMED_TX"),
    ("signer", b"\x00" * 31, "E_MALFORMED_TX"),
    ("sig", b"\x00" * 10, "E_MALFORMED_TX"),
    ("nonce", -1, "E_MALFORMED_TX"),
    ("nonce", True, "E_MALFORMED_TX"),
])
def test_invalid_fields_are_refused(field, value, code):
    with pytest.raises(TxError) as err:
        Transaction.from_obj(make(**{field: value}))
    assert err.value.code == code


def test_invalid_signature_is_refused():
    tx = Transaction.from_obj(make(sig=b"\x01" * 64))
    with pytest.raises(TxError) as err:
        tx.check("chain-a")
    assert err.value.code == "E_BAD_SIGNATURE"


def test_invalid_chain_is_refused():
    tx = Transaction.from_obj(make())
    with pytest.raises(TxError) as err:
        tx.check("chain-b")
    assert err.value.code == "E_WRONG_CHAIN"


def test_invalid_oversized_transaction_is_refused():
    with pytest.raises(TxError) as err:
        Transaction.from_obj(make(args={"blob": "x" * 70_000}))
    assert err.value.code == "E_TX_TOO_LARGE"


def test_invalid_float_argument_is_refused():
    with pytest.raises(TxError) as err:
        Transaction.from_json({**Transaction.from_obj(make()).to_json(), "args": {"v": 1.5}})
    assert err.value.code == "E_MALFORMED_TX"


def test_invalid_extra_field_is_refused():
    with pytest.raises(TxError, match="unexpected"):
        Transaction.from_obj(make(extra=1))


def test_invalid_garbage_bytes_are_refused():
    with pytest.raises(TxError):
        Transaction.decode(b"\xc1garbage")


def test_body_cut_from_wire_bytes_equals_reencoded_body():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=50)
    @given(st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63) | st.text(max_size=5),
                           max_size=4), st.integers(0, 2**64 - 1))
    def check(args, nonce):
        tx = Transaction.create(KEY, "chain-a", "membership", "add_member", args, nonce)
        # The cut itself must work (not only the re-encoding fallback): it used to be off
        # by one byte and silently return None for every transaction.
        assert body_from_encoded(tx.encoded) == canonical.encode(tx.body())
        wire = Transaction.decode(tx.encoded)
        assert wire.signed_bytes == tx.signed_bytes
        assert wire.hash == tx.hash
        wire.check("chain-a")

    check()


def test_body_cut_refuses_bytes_that_do_not_end_in_sig_and_signer():
    raw = Transaction.create(KEY, "chain-a", "membership", "add_member", {}, 1).encoded
    assert body_from_encoded(raw[:-1] + b"\x00") is not None  # signer bytes are opaque
    assert body_from_encoded(raw[:50]) is None
    assert body_from_encoded(b"\x86" + raw[1:]) is None
    broken = bytearray(raw)
    broken[-41] = 0xA5  # the signer key's header
    assert body_from_encoded(bytes(broken)) is None


@pytest.mark.parametrize("nonce", ["²", "١", "12a", "", "1" * 21])
def test_invalid_nonce_strings_are_refused(nonce):
    body = {**Transaction.from_obj(make()).to_json(), "nonce": nonce}
    with pytest.raises(TxError) as err:
        Transaction.from_json(body)
    assert err.value.code == "E_MALFORMED_TX"


def test_nonce_as_decimal_string_is_accepted():
    tx = Transaction.create(KEY, "chain-a", "membership", "add_member", {}, 2**64 - 1)
    assert Transaction.from_json({**tx.to_json(), "nonce": str(2**64 - 1)}).hash == tx.hash


def test_block_decode_reuses_transactions_the_node_already_holds():
    """Regression: a validator decoded every transaction of a proposal again (and
    recomputed its hash) although its mempool held the same checked object."""
    from node.block import Block, Header

    txs = [Transaction.create(KEY, "chain-a", "membership", "add_member", {"i": i}, i)
           for i in range(3)]
    held = {tx.hash: tx for tx in txs[:2]}
    header = Header(chain_id="chain-a", height=1, time_ms=1, prev_hash=b"\0" * 32,
                    proposer=b"\1" * 32, txs_root=b"\2" * 32, state_root=b"\3" * 32,
                    results_root=b"\4" * 32, last_commit_hash=b"\5" * 32,
                    validators_hash=b"\6" * 32)
    block = Block.decode(Block(header, tuple(txs), None).encoded, known=held.get)
    assert block.txs[0] is txs[0] and block.txs[1] is txs[1]
    assert block.txs[2] is not txs[2] and block.txs[2] == txs[2]


def test_a_decoded_block_keeps_the_bytes_it_came_from_and_they_re_encode_the_same():
    """Block.decode keeps ``data`` as ``encoded`` instead of re-encoding a ~1 MB block; that
    is sound only because re-encoding gives exactly ``data`` back (canonical form)."""
    from node.block import Block, Header

    txs = [Transaction.create(KEY, "chain-a", "membership", "add_member", {"i": i}, i)
           for i in range(4)]
    for last_commit in (None, certify(1, b"\7" * 32, [seed_key("v0"), seed_key("v1")])):
        header = Header(chain_id="chain-a", height=2, time_ms=1, prev_hash=b"\0" * 32,
                        proposer=b"\1" * 32, txs_root=b"\2" * 32, state_root=b"\3" * 32,
                        results_root=b"\4" * 32, last_commit_hash=b"\5" * 32,
                        validators_hash=b"\6" * 32)
        data = Block(header, tuple(txs), last_commit).encoded
        for known in (None, {tx.hash: tx for tx in txs[:2]}.get):
            block = Block.decode(data, known=known)
            assert block.encoded == data
            assert canonical.encode(block.to_obj()) == data


def test_result_leaf_spliced_from_receipt_bytes_equals_the_canonical_leaf():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from contracts.sdk import Event
    from node.block import result_leaf, result_leaf_from_encoded
    from node.execution import Receipt

    events = st.lists(st.builds(
        lambda t, a, k: Event("clearance", t, a, tuple(k)),
        st.text(min_size=1, max_size=8),
        st.dictionaries(st.text(max_size=6), st.integers(0, 2**40) | st.text(max_size=6),
                        max_size=3),
        st.lists(st.text(max_size=6), max_size=2)), max_size=3)

    @settings(max_examples=60)
    @given(st.binary(min_size=32, max_size=32), st.sampled_from(["OK", "E_ARGS"]),
           st.text(max_size=20), events)
    def check(tx_hash, code, message, evs):
        receipt = Receipt(code, message, tuple(evs))
        assert result_leaf_from_encoded(tx_hash, receipt.encoded) == \
            result_leaf(tx_hash, receipt.to_obj())

    check()


class _CountingPattern:
    """Stands in for CHAIN_ID_RE to count how often the shape checks run."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.calls = 0

    def fullmatch(self, text):
        self.calls += 1
        return self.pattern.fullmatch(text)


def test_shape_checks_run_once_per_decoded_transaction(monkeypatch):
    import node.tx as tx_module
    counting = _CountingPattern(tx_module.CHAIN_ID_RE)
    monkeypatch.setattr(tx_module, "CHAIN_ID_RE", counting)
    tx = Transaction.decode(Transaction.from_obj(make()).encoded)
    assert counting.calls == 2  # from_obj above, decode here
    tx.check("chain-a")  # what the mempool runs on a decoded transaction
    assert counting.calls == 2
    with pytest.raises(TxError) as err:
        tx.check("chain-b")  # the chain is still compared every time
    assert err.value.code == "E_WRONG_CHAIN"


def test_a_constructed_transaction_gets_every_check():
    bad = Transaction("chain-a", "membership", "add_member", {}, b"\x00" * 32, -1, b"\x00" * 64)
    with pytest.raises(TxError) as err:
        bad.check("chain-a")
    assert err.value.code == "E_MALFORMED_TX"


def test_certified_decode_of_a_canonical_transaction_equals_the_full_decode():
    """Block sync cuts transactions into hash, signer and signature and decodes their
    fields only when read, without the canonical check (the certificate and txs_root vouch
    for the bytes); on canonical bytes it must give exactly what the full decoder gives, or
    the synced node would compute other hashes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=80)
    @given(st.dictionaries(st.text(max_size=5),
                           st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5)
                           | st.binary(max_size=5) | st.lists(st.integers(0, 9), max_size=3),
                           max_size=4), st.integers(0, 2**64 - 1))
    def check(args, nonce):
        tx = Transaction.create(KEY, "chain-a", "membership", "add_member", args, nonce)
        full = Transaction.decode(tx.encoded)
        unchecked = Transaction.decode_certified(tx.encoded, "chain-a")
        assert unchecked is not None
        # What the certificate checks needs no decoding of the fields ...
        assert (unchecked.hash, unchecked.encoded, unchecked.signed_bytes, unchecked.sig,
                unchecked.signer) == (full.hash, full.encoded, full.signed_bytes, full.sig,
                                      full.signer)
        unchecked.validate_basic("chain-a")
        assert "args" not in unchecked.__dict__
        # ... and the fields, once read, are the full decoder's.
        assert unchecked.args == full.args and unchecked.nonce == full.nonce
        assert unchecked == full
        unchecked.check("chain-a")  # the shape and signature checks still pass on it
        # Cut for another chain, the same bytes give another hash: txs_root refuses them.
        other = Transaction.decode_certified(tx.encoded, "chain-b")
        assert other is not None and other.hash != full.hash
        with pytest.raises(TxError) as err:
            other.validate_basic("chain-a")
        assert err.value.code == "E_WRONG_CHAIN"
        with pytest.raises(TxError):
            _ = other.contract  # its fields name chain-a

    check()


def test_certified_decode_leaves_odd_layouts_to_the_full_decoder():
    raw = Transaction.create(KEY, "chain-a", "membership", "add_member", {}, 1).encoded
    assert Transaction.decode_certified(raw[:50], "chain-a") is None  # no sig/signer tail
    assert Transaction.decode_certified(raw + b"\x00", "chain-a") is None  # tail moved


def test_certified_transaction_fields_that_do_not_decode_raise_when_read():
    """Bytes that no honest validator would have certified (only a Byzantine quorum could
    sign a block holding them) are found out when their fields are first read: TxError,
    never a half-decoded transaction."""
    raw = Transaction.create(KEY, "chain-a", "membership", "add_member", {}, 1).encoded
    malformed = raw.replace(b"\xa7chain-a", b"\xa8chain-a")  # one byte too long: not UTF-8
    not_a_string = raw.replace(b"\xa8chain_id\xa7chain-a", b"\xa8chain_id\xc4\x07chain-a")
    negative = raw.replace(b"\xa5nonce\x01", b"\xa5nonce\xff")  # nonce -1: a bad shape
    for odd in (malformed, not_a_string, negative):
        assert odd != raw
        tx = Transaction.decode_certified(odd, "chain-a")
        assert tx is not None
        for _ in range(2):  # and again: it stays undecoded, never half-filled
            with pytest.raises(TxError) as err:
                _ = tx.args
            assert err.value.code == "E_MALFORMED_TX"
            assert "args" not in tx.__dict__
    with pytest.raises(AttributeError):
        _ = Transaction.decode_certified(raw, "chain-a").no_such_field  # type: ignore[union-attr]


def test_a_synced_block_with_non_canonical_transaction_bytes_is_refused(tmp_path):
    """The unchecked decode accepts a transaction whose body is not canonical (a nonce in
    a longer integer form than needed); its hash is then not the one the quorum certified,
    so txs_root refuses the block under either block version, and the node never stores
    bytes that are not canonical."""
    from node.block import BLOCK_VERSION_HASHES, BLOCK_VERSION_SIGNED, Block, BlockError

    for version in (BLOCK_VERSION_HASHES, BLOCK_VERSION_SIGNED):
        genesis = make_genesis(block_version=version)
        _, source = open_engine(str(tmp_path / f"source-{version}"), genesis)
        validator = seed_key("v0")
        tx = add_member_tx(seed_key("admin"), "m", 5)
        block = source.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                                   txs=[tx], last_commit=None)
        cert = certify(1, block.hash, [validator])
        odd = tx.encoded.replace(b"\xa5nonce\x05", b"\xa5nonce\xcc\x05")
        assert odd != tx.encoded
        with pytest.raises(TxError):
            Transaction.decode(odd)  # the full decoder refuses it outright
        assert Transaction.decode_certified(odd, genesis.chain_id) is not None
        forged = Block.decode(canonical.encode({"header": block.header.to_obj(), "txs": [odd],
                                                "last_commit": None}), synced=True)
        assert forged.hash == block.hash
        _, target = open_engine(str(tmp_path / f"target-{version}"), genesis)
        with pytest.raises(BlockError, match="txs_root"):
            target.validate_block(forged, certificate=cert)
        target.validate_block(Block.decode(block.encoded, synced=True), certificate=cert)


def test_a_synced_block_is_not_taken_without_its_certificate(tmp_path):
    """Block.decode(synced=True) skips checks that only the certificate makes redundant:
    the engine refuses such a block on any path that verifies no certificate."""
    from node.block import Block, BlockError

    genesis = make_genesis()
    _, source = open_engine(str(tmp_path / "source"), genesis)
    validator = seed_key("v0")
    block = source.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + 1,
                               txs=[add_member_tx(seed_key("admin"), "m", 1)], last_commit=None)
    _, target = open_engine(str(tmp_path / "target"), genesis)
    synced = Block.decode(block.encoded, synced=True)
    with pytest.raises(BlockError, match="certificate"):
        target.validate_block(synced)
    with pytest.raises(BlockError, match="certificate"):
        target.commit(synced, certify(1, block.hash, [validator]))
    target.validate_block(synced, certificate=certify(1, block.hash, [validator]))


def test_plain_transactions_keep_fast_attribute_reads():
    """A ``__getattr__`` on Transaction itself (the first form of the lazy certified
    decode) made every attribute read of every transaction ~2.5× slower — CPython does not
    specialise attribute reads on such a class — and cost ~5% of a node's CPU under load.
    Only the certified subclass may have one; the two still compare equal."""
    assert "__getattr__" not in vars(Transaction)
    assert type(Transaction.__getattribute__) is type(object.__getattribute__)
    tx = Transaction.create(KEY, "chain-a", "membership", "add_member", {"a": 1}, 3)
    certified = Transaction.decode_certified(tx.encoded, "chain-a")
    assert type(certified) is not Transaction and isinstance(certified, Transaction)
    assert tx == certified and certified == tx
    assert tx != Transaction.create(KEY, "chain-a", "membership", "add_member", {"a": 2}, 3)


def test_a_decoded_transaction_is_the_same_with_the_compiled_cut_or_without():
    """``from_obj`` takes the hash and signed bytes from one C pass where it is built; they
    must be exactly what the Python cut and a fresh hash give, for any chain and args, and
    for bytes the cut does not apply to."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    import node.tx as tx_module
    compiled = tx_module._compiled_parts
    if compiled is None:
        pytest.skip("compiled state-tree module not built here")

    def fields(tx):
        return (tx.hash, tx.signed_bytes, tx.encoded, tx.sig, tx.signer, tx.chain_id,
                tx.contract, tx.action, tx.args, tx.nonce)

    @settings(max_examples=80, deadline=None)
    @given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True),
           st.dictionaries(st.text(max_size=5), st.integers(0, 2**64 - 1) | st.text(max_size=5),
                           max_size=4))
    def check(chain_id, args):
        raw = Transaction.create(KEY, chain_id, "clearance", "create_order", args, 7).encoded
        fast = Transaction.decode(raw)
        tx_module.use_compiled_parts(None)
        try:
            slow = Transaction.decode(raw)
        finally:
            tx_module.use_compiled_parts(compiled)
        assert "hash" in fast.__dict__  # set by the pass, not computed on first read
        assert fields(fast) == fields(slow)
        assert fast.hash == canonical.digest(fast.signed_bytes)
        fast.check(chain_id)

    check()


def test_a_chain_id_too_long_for_the_compiled_cut_is_refused_by_the_shape_check():
    raw = canonical.encode(make(chain_id="c" * 5000))
    with pytest.raises(TxError) as err:
        Transaction.decode(raw)
    assert err.value.code == "E_MALFORMED_TX"


def test_remembered_identifiers_are_only_plain_strings_that_matched(monkeypatch):
    import node.tx as tx_module
    seen = tx_module._MATCHED[tx_module.NAME_RE]
    monkeypatch.setattr(tx_module, "_MAX_MATCHED", len(seen) + 2)

    class Name(str):
        pass

    assert tx_module._matches(tx_module.NAME_RE, "remembered_name")
    assert "remembered_name" in seen
    assert not tx_module._matches(tx_module.NAME_RE, "Not-A-Name")
    assert "Not-A-Name" not in seen
    assert tx_module._matches(tx_module.NAME_RE, Name("subclassed"))
    assert "subclassed" not in seen
    for value in [None, 5, b"bytes", ["list"], {"a": 1}]:
        assert not tx_module._matches(tx_module.NAME_RE, value)
    assert tx_module._matches(tx_module.NAME_RE, "second_name")
    assert tx_module._matches(tx_module.NAME_RE, "over_the_bound")  # still checked ...
    assert "over_the_bound" not in seen  # ... but not remembered
    # a remembered name passes; the same check refuses what it always refused
    with pytest.raises(TxError):
        Transaction.from_obj(make(action="Bad-Action"))
    with pytest.raises(TxError):
        Transaction.from_obj(make(contract=["membership"]))


def test_refused_chain_ids_never_take_the_remembered_signing_prefixes(monkeypatch):
    """Review finding: the first eight chain ids seen, junk included, held the places
    for good, and the node's own chain was then never remembered."""
    import node.tx as tx_module
    monkeypatch.setattr(tx_module, "_SIGNING_PREFIXES", {})
    for i in range(10):
        with pytest.raises(TxError):
            Transaction.decode(canonical.encode(make(chain_id=f"bad chain {i}!")))
    assert tx_module._SIGNING_PREFIXES == {}
    Transaction.decode(Transaction.from_obj(make()).encoded)
    if tx_module._compiled_parts is not None:
        assert list(tx_module._SIGNING_PREFIXES) == ["chain-a"]
