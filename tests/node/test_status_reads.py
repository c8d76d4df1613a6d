"""GET /v1/status is what monitors and catching-up operators poll: it must not read and
decode the last block (1,000 transactions, ~15 ms with every check) on every call."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.network import init_network
from cli.presets import CONTRACTS, PRESETS
from node.app import Node
from node.block import Block
from node.config import load_config
from tests.ledger_support import certify, seed_key


def test_status_reads_the_tip_from_memory_not_the_last_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="status-tip", base_port=40300)
    node = Node(load_config(tmp_path / "net" / "customs"))
    try:
        assert node.status()["latest_block_hash"] is None
        assert node.last_block_time() == node.genesis.genesis_time_ms
        block = node.engine.build_block(proposer=node.pubkey,
                                        time_ms=node.genesis.genesis_time_ms + 5,
                                        txs=[], last_commit=None)
        node.engine.commit(block, certify(1, block.hash, [seed_key("v0")]))
        decoded: list[bytes] = []
        real_decode = Block.decode

        def counting_decode(data: bytes, *args: object, **kwargs: object) -> Block:
            decoded.append(data)
            return real_decode(data, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Block, "decode", staticmethod(counting_decode))
        for _ in range(5):
            status = node.status()
            assert status["height"] == 1
            assert status["latest_block_hash"] == block.hash.hex()
            assert status["latest_block_time_ms"] == block.header.time_ms
            assert node.last_block_time() == block.header.time_ms
        assert decoded == []
    finally:
        node.store.close()
