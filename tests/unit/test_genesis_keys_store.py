"""Genesis validation names the wrong field; key files and data dirs fail clearly."""

from __future__ import annotations

import copy
import os

import plyvel
import pytest

from node.genesis import GenesisError, parse_genesis
from node.keys import KeyFileError, load_key_file, write_key_file
from node.store import LedgerStore, StoreError

from ledger_support import make_genesis, seed_key


def raw():
    return copy.deepcopy(dict(make_genesis(["v0", "v1"]).raw))


@pytest.mark.parametrize("mutate,field", [
    (lambda g: g.update(chain_id=""), "chain_id"),
    (lambda g: g["validators"][1].update(pubkey="zz"), "validators[1].pubkey"),
    (lambda g: g["validators"][0].update(org="nobody"), "validators[0].org"),
    (lambda g: g["validators"][1].update(pubkey=g["validators"][0]["pubkey"]),
     "validators[1].pubkey"),
    (lambda g: g["orgs"][0].update(roles=[]), "orgs[0].roles"),
    (lambda g: g["orgs"][0]["keys"][0].update(roles=["customs"]), "orgs[0].keys[0].roles"),
    (lambda g: g.update(consensus={"timeout_propose_ms": -5}), "consensus.timeout_propose_ms"),
    (lambda g: g.update(consensus={"bogus": 1}), "consensus.bogus"),
    # a block that cannot fit one message could never be proposed or served by sync
    (lambda g: g.update(consensus={"max_block_bytes": 4 * 1024 * 1024}),
     "consensus.max_block_bytes"),
    (lambda g: g.update(consensus={"max_block_bytes": 0}), "consensus.max_block_bytes"),
    (lambda g: g.update(consensus={"block_version": 3}), "consensus.block_version"),
    (lambda g: g.update(consensus={"block_version": 0}), "consensus.block_version"),
    (lambda g: g.update(contracts=[{"name": "clearance", "version": "1"}]), "contracts"),
    (lambda g: g["validators"][0].update(api="ftp://x"), "validators[0].api"),
])
def test_invalid_genesis_names_the_field(mutate, field):
    g = raw()
    mutate(g)
    with pytest.raises(GenesisError) as err:
        parse_genesis(g)
    assert str(err.value).startswith(field), str(err.value)


def test_block_version_is_1_when_absent_and_new_networks_get_2(tmp_path):
    """A genesis from before block version 2 keeps the rule its blocks were certified under
    (a node must still verify the chain it already has); networks made now get 2."""
    from cli.network import init_network
    from cli.presets import CONTRACTS, PRESETS
    from node.genesis import load_genesis

    g = raw()
    del g["consensus"]
    assert parse_genesis(g).params.block_version == 1
    path = init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                        chain_id="versions")
    assert load_genesis(path).params.block_version == 2


def test_key_file_round_trip_and_permissions(tmp_path):
    path = tmp_path / "node.key"
    key = seed_key("k")
    write_key_file(path, key, "node")
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert load_key_file(path).encode() == key.encode()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_file(path, key, "node")


def test_invalid_world_readable_key_is_refused(tmp_path):
    path = tmp_path / "node.key"
    write_key_file(path, seed_key("k"), "node")
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


def test_invalid_key_file_content_is_refused(tmp_path):
    path = tmp_path / "bad.key"
    path.write_text("not a key")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_key_file(path)


def test_invalid_store_of_another_chain_is_refused(tmp_path):
    g = make_genesis()
    store = LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=g.hash)
    store.initialise(chain_id=g.chain_id, genesis_hash=g.hash, state=g.initial_state())
    store.close()
    with pytest.raises(StoreError, match="belongs to chain"):
        LedgerStore.open(str(tmp_path), chain_id="other", genesis_hash=g.hash)
    with pytest.raises(StoreError, match="different genesis"):
        LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=b"\x00" * 32)


def test_invalid_store_opened_twice_is_refused(tmp_path):
    g = make_genesis()
    store = LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=g.hash)
    try:
        with pytest.raises(StoreError, match="in use"):
            LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=g.hash)
    finally:
        store.close()


def test_invalid_foreign_leveldb_is_refused(tmp_path):
    db = plyvel.DB(str(tmp_path), create_if_missing=True)
    db.put(b"hello", b"world")
    db.close()
    g = make_genesis()
    with pytest.raises(StoreError, match="not a jangbu ledger"):
        LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=g.hash)


def test_invalid_corrupt_store_is_refused(tmp_path):
    g = make_genesis()
    store = LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=g.hash)
    store.initialise(chain_id=g.chain_id, genesis_hash=g.hash, state=g.initial_state())
    store.close()
    for name in os.listdir(tmp_path):
        if name.startswith("MANIFEST"):
            (tmp_path / name).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(StoreError):
        LedgerStore.open(str(tmp_path), chain_id=g.chain_id, genesis_hash=g.hash)


def test_transaction_locations_are_the_canonical_encoding_of_height_and_index():
    """The ``t/`` index value is built from parts (array header, the height once, each
    index from a table) instead of one canonical encode per transaction: byte for byte the
    same, across every msgpack integer width (older stores and tx_location read it)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from consensus import canonical
    from node.store import _encoded_indexes

    @settings(max_examples=300)
    @given(st.integers(1, 2**63), st.integers(0, 70_000))
    def check(height, index):
        built = b"\x92" + canonical.encode(height) + _encoded_indexes(index + 1)[index]
        assert built == canonical.encode([height, index])

    check()
