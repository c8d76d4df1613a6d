"""A restart reads its last block's header, never its transactions: the start's state root
check and the engine's tip decoded the whole last block (1,000 transactions, ~20 ms)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cli.network import init_network
from cli.presets import CONTRACTS, PRESETS
from consensus import canonical
from node.app import Node, NodeStartError
from node.block import Block, BlockError, decode_header
from node.config import load_config
from node.tx import Transaction
from tests.ledger_support import certify, seed_key


def test_a_restart_decodes_no_transaction_of_its_last_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="header-reads", base_port=40320)
    config = load_config(tmp_path / "net" / "customs")
    node = Node(config)
    try:
        txs = [Transaction.create(seed_key("seller"), node.chain_id, "clearance", "create_order",
                                  {"order_id": f"O-{i}"}, i + 1) for i in range(3)]
        block = node.engine.build_block(proposer=node.pubkey,
                                        time_ms=node.genesis.genesis_time_ms + 5,
                                        txs=txs, last_commit=None)
        assert len(block.txs) == 3
        node.engine.commit(block, certify(1, block.hash, [seed_key("v0")]))
    finally:
        node.store.close()
    decoded: list[bytes] = []
    blocks: list[bool] = []
    real_tx_decode, real_block_decode = Transaction.decode, Block.decode

    def counting_tx_decode(data: bytes) -> Transaction:
        decoded.append(data)
        return real_tx_decode(data)

    def counting_block_decode(data: bytes, *args: object, **kwargs: object) -> Block:
        blocks.append(bool(kwargs.get("synced")))
        return real_block_decode(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Transaction, "decode", staticmethod(counting_tx_decode))
    monkeypatch.setattr(Block, "decode", staticmethod(counting_block_decode))
    node = Node(config)  # checks its state and block 1's transactions against block 1
    try:
        assert node.engine.tip() == (1, block.hash, block.header.time_ms)
        assert node.store.get_header(1) == block.header
        assert node.store.get_header(2) is None
        assert decoded == []  # cut and hashed as a synced block's, never decoded
        assert blocks == [True]  # the start's check; the tip read the header alone
    finally:
        node.store.close()


HEADER = {"chain_id": "c", "height": 7, "time_ms": 1_000, "prev_hash": b"\x01" * 32,
          "proposer": b"\x02" * 32, "txs_root": b"\x03" * 32, "state_root": b"\x04" * 32,
          "results_root": b"\x05" * 32, "last_commit_hash": b"\x06" * 32,
          "validators_hash": b"\x07" * 32}


def test_decode_header_gives_the_header_of_a_block_with_transactions() -> None:
    key = seed_key("seller")
    txs = tuple(Transaction.create(key, "c", "clearance", "create_order", {"order_id": f"O-{i}"},
                                   i + 1) for i in range(3))
    block = Block.decode(canonical.encode({"header": HEADER, "txs": [tx.encoded for tx in txs],
                                           "last_commit": None}))
    header = decode_header(block.encoded)
    assert header == block.header and header.hash == block.hash


@pytest.mark.parametrize("obj", [
    {"header": {}, "txs": [], "last_commit": None},
    {"txs": [], "last_commit": None},
    {"header": None, "txs": [], "last_commit": None, "extra": 1},
    [1, 2, 3],
    {"header": HEADER, "txs": [b"ok", 1], "last_commit": None},
    {"header": HEADER, "txs": None, "last_commit": None},
])
def test_decode_header_refuses_what_is_not_a_block(obj: object) -> None:
    with pytest.raises(BlockError):
        decode_header(canonical.encode(obj))


def test_decode_header_refuses_bytes_that_are_not_canonical() -> None:
    with pytest.raises(BlockError):
        decode_header(b"\xc1not canonical")


def restarted_on_a_forged_last_block(tmp_path: Path, spoil_tx: bool) -> None:
    """Block 1 stored with a transaction its header does not vouch for (its bytes intact,
    or garbage), then a restart on it."""
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="header-reads", base_port=40340)
    config = load_config(tmp_path / "net" / "customs")
    node = Node(config)
    try:
        block = node.engine.build_block(proposer=node.pubkey,
                                        time_ms=node.genesis.genesis_time_ms + 5,
                                        txs=[], last_commit=None)
        tx = Transaction.create(seed_key("seller"), node.chain_id, "clearance", "create_order",
                                {"order_id": "O-1"}, 1)
        if spoil_tx:
            tx.__dict__["encoded"] = b"\x87 garbage where a transaction was"
        forged = dataclasses.replace(block, txs=(tx,))
        assert forged.hash == block.hash  # the header, and so the certificate, are intact
        node.store.commit_block(forged, certify(1, block.hash, [seed_key("v0")]), [b"\x80"],
                                {}, node.engine.tree.preview({}, node.store.leaves))
    finally:
        node.store.close()
    Node(config)


@pytest.mark.parametrize("spoil_tx", [False, True])
def test_a_last_block_whose_transactions_its_header_does_not_vouch_for_stops_the_start(
        tmp_path: Path, spoil_tx: bool) -> None:
    with pytest.raises(NodeStartError, match=r"data directory .* is damaged \(block 1"):
        restarted_on_a_forged_last_block(tmp_path, spoil_tx)
