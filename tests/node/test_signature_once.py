"""Each node checks a transaction's signature once, wherever it first sees it.

The mempool (admission, gossip) and the engine (validating a proposal) share one
:class:`SignatureCache`. An empty cache is falsy (it has ``len``), and the engine once took
``sig_cache or SignatureCache()``, so at start every node got a private second cache: about
70% of transactions were verified twice per node under load (measured with a counting
wrapper around libsodium: 10,350 checks for 6,000 transactions).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.network import init_network
from cli.presets import CONTRACTS, PRESETS
from consensus.types import ValidatorSet
from node.app import Node
from node.block import BLOCK_VERSION_HASHES, BLOCK_VERSION_SIGNED
from node.config import load_config
from node.engine import Engine, SignatureCache, certificate_verifier
from node.registry import load_contracts
from node.store import LedgerStore
from tests.ledger_support import T0, add_member_tx, make_genesis, open_engine, seed_key

# A copy of a block with a signature swapped keeps the block hash under version 1 and is
# caught by the signature check; under version 2 the hash covers the signature, and the
# copy no longer matches its header's txs_root.
SWAP_REFUSED_BY = [(BLOCK_VERSION_HASHES, "signature"), (BLOCK_VERSION_SIGNED, "txs_root")]


def test_a_started_node_shares_one_cache_between_mempool_and_engine(tmp_path: Path) -> None:
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="sig-once", base_port=40100)
    node = Node(load_config(tmp_path / "net" / "customs"))
    try:
        assert len(node.sig_cache) == 0
        assert node.engine.sig_cache is node.mempool.sig_cache is node.sig_cache
    finally:
        node.store.close()


def test_an_empty_cache_given_to_the_engine_is_the_one_it_fills(tmp_path: Path) -> None:
    genesis = make_genesis()
    proposer_store, proposer = open_engine(str(tmp_path / "proposer"), genesis)
    cache = SignatureCache()
    store = LedgerStore.open(str(tmp_path / "validator"), chain_id=genesis.chain_id,
                             genesis_hash=genesis.hash)
    try:
        tree = store.initialise(chain_id=genesis.chain_id, genesis_hash=genesis.hash,
                                state=genesis.initial_state())
        vset = ValidatorSet(tuple(genesis.validator_pubkeys()))
        engine = Engine(chain_id=genesis.chain_id, contracts=load_contracts(genesis.contracts),
                        store=store, tree=tree, validators_hash=vset.hash(),
                        validators=vset.validators, max_block_txs=100,
                        max_block_bytes=1 << 20, block_version=genesis.params.block_version,
                        verify_commit=certificate_verifier(genesis.chain_id, vset),
                        sig_cache=cache)
        assert engine.sig_cache is cache
        tx = add_member_tx(seed_key("admin"), "clerk", 0)
        block = proposer.build_block(proposer=seed_key("v0").verify_key.encode(),
                                     time_ms=T0 + 1, txs=[tx], last_commit=None)
        engine.validate_block(block, now_ms=T0 + 1)
        # What the engine verified, the mempool's gossip path will not verify again.
        assert cache.verified(tx)
    finally:
        store.close()
        proposer_store.close()


@pytest.mark.parametrize("version,refusal", SWAP_REFUSED_BY)
def test_a_proposal_cannot_pass_off_a_swapped_signature_as_one_already_checked(
        tmp_path: Path, version: int, refusal: str) -> None:
    """Regression: the cache was keyed by the transaction hash, which covers the signed
    body but not ``sig``. A validator that had admitted a transaction accepted a proposal
    carrying it with a garbage signature (the cache said "verified"), and stored it so."""
    from dataclasses import replace

    from node.block import Block, BlockError

    genesis = make_genesis(block_version=version)
    proposer_store, proposer = open_engine(str(tmp_path / "proposer"), genesis)
    store, validator = open_engine(str(tmp_path / "validator"), genesis)
    try:
        tx = add_member_tx(seed_key("admin"), "clerk", 0)
        validator.sig_cache.check(tx, genesis.chain_id)  # admitted: checked once
        block = proposer.build_block(proposer=seed_key("v0").verify_key.encode(),
                                     time_ms=T0 + 1, txs=[tx], last_commit=None)
        forged_tx = replace(tx, sig=bytes(64))
        assert forged_tx.hash == tx.hash
        forged = Block.decode(Block(block.header, (forged_tx,), None).encoded)
        assert forged.hash == block.hash
        with pytest.raises(BlockError, match=refusal):
            validator.validate_block(forged, now_ms=T0 + 1)
        assert not validator.sig_cache.verified(forged_tx)
        assert validator.validate_block(Block.decode(block.encoded), now_ms=T0 + 1)
    finally:
        store.close()
        proposer_store.close()


@pytest.mark.parametrize("version,refusal", SWAP_REFUSED_BY)
def test_committing_another_copy_of_a_checked_block_checks_that_copy(
        tmp_path: Path, version: int, refusal: str) -> None:
    """Regression: the engine remembered "validated" by block hash, and the hash does not
    cover signatures (block version 1). A validator that had checked a proposal would then
    commit a second copy with the same hash and forged signatures without checking it."""
    from dataclasses import replace

    from node.block import Block, BlockError

    genesis = make_genesis(block_version=version)
    proposer_store, proposer = open_engine(str(tmp_path / "proposer"), genesis)
    store, validator = open_engine(str(tmp_path / "validator"), genesis)
    try:
        txs = [add_member_tx(seed_key("admin"), f"clerk{i}", i) for i in range(3)]
        block = proposer.build_block(proposer=seed_key("v0").verify_key.encode(),
                                     time_ms=T0 + 1, txs=txs, last_commit=None)
        genuine = Block.decode(block.encoded)
        validator.validate_block(genuine, now_ms=T0 + 1)
        forged = Block.decode(Block(block.header, (*block.txs[:2], replace(block.txs[2],
                                                                           sig=bytes(64))),
                                    None).encoded)
        assert forged.hash == genuine.hash
        cert = {"any": "certificate"}  # not looked at: the engine's caller checked it
        with pytest.raises(BlockError, match=refusal):
            validator.commit(forged, cert)
        assert store.height == 0
        validator.commit(genuine, cert)
        assert store.get_block_bytes(1) == block.encoded
    finally:
        store.close()
        proposer_store.close()
