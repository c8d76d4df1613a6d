"""Executing blocks with the node's committed-member memo gives exactly the receipts and
roots of reading every signer's record, including when a block adds or revokes a key that
signs later in the same block, and after a commit changes membership."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nacl.signing import SigningKey

from node.engine import Engine
from node.execution import committed_member_lookup
from node.store import LedgerStore
from node.tx import Transaction

from ledger_support import CHAIN_ID, T0, add_member_tx, certify, make_genesis, open_engine, seed_key


class CountingReader:
    """The store's state reader, noting every key read."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.keys.append(key)
        value: bytes | None = self.base.get(key)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.base.scan(prefix)


def with_memo(path: str) -> tuple[LedgerStore, Engine, CountingReader]:
    """An engine using the memo as the node wires it, over a reader that counts."""
    store, engine = open_engine(path, make_genesis())
    reader = CountingReader(store.state)
    engine.committed_members = committed_member_lookup(reader, lambda: store.height)
    return store, engine, reader


def member_key(name: str) -> bytes:
    return b"membership/key/" + seed_key(name).verify_key.encode().hex().encode()


def revoke_tx(admin: SigningKey, name: str, nonce: int) -> Transaction:
    return Transaction.create(admin, CHAIN_ID, "membership", "revoke_member",
                              {"pubkey": seed_key(name).verify_key.encode().hex()}, nonce)


def by(name: str, nonce: int) -> Transaction:
    """A call by member ``name`` (it holds no admin role, so a known signer is refused by
    the contract, an unknown or revoked one before it)."""
    return add_member_tx(seed_key(name), f"{name}-child-{nonce}", nonce)


def run_blocks(engine: Engine, blocks: list[list[Transaction]]) -> list[tuple[Any, ...]]:
    proposer = seed_key("v0")
    outcomes = []
    last_commit = None
    for height, txs in enumerate(blocks, start=1):
        block = engine.build_block(proposer=proposer.verify_key.encode(),
                                   time_ms=T0 + height, txs=txs, last_commit=last_commit)
        result = engine.validate_block(block)
        outcomes.append((block.header.state_root, block.header.results_root,
                         [r.code for r in result.receipts]))
        last_commit = certify(height, block.hash, [proposer])
        engine.commit(block, last_commit)
    return outcomes


def test_memo_gives_the_same_chain_as_reading_every_record(tmp_path):
    admin = seed_key("admin")
    blocks = [
        # x signs before it exists, then after it is added in the same block; y likewise.
        [by("x", 1), add_member_tx(admin, "x", 1), by("x", 2), add_member_tx(admin, "y", 2),
         by("y", 1)],
        # x is revoked mid-block: its calls before and after differ.
        [by("x", 3), revoke_tx(admin, "x", 3), by("x", 4), by("y", 2), by("y", 3)],
        # The next height: x still revoked (the memo's height moved on), y still known.
        [by("x", 5), by("y", 4), by("z", 1)],
    ]
    store_a, engine_a = open_engine(str(tmp_path / "plain"), make_genesis())
    assert engine_a.committed_members is None
    plain = run_blocks(engine_a, blocks)
    store_b, engine_b, _ = with_memo(str(tmp_path / "memo"))
    memo = run_blocks(engine_b, blocks)
    assert memo == plain
    codes = [c for _, _, c in plain]
    assert codes[0][0] == "E_UNKNOWN_SIGNER" and codes[0][2] not in ("OK", "E_UNKNOWN_SIGNER")
    assert codes[1][0] not in ("OK", "E_REVOKED_SIGNER") and codes[1][2] == "E_REVOKED_SIGNER"
    assert codes[2][:3] == ["E_REVOKED_SIGNER", codes[1][3], "E_UNKNOWN_SIGNER"]
    store_a.close()
    store_b.close()


def test_memo_reads_each_signer_once_per_height(tmp_path):
    store, engine, reader = with_memo(str(tmp_path / "memo"))
    run_blocks(engine, [[add_member_tx(seed_key("admin"), "x", 1)]])
    assert member_key("x") not in reader.keys  # the add was read through the block
    proposer = seed_key("v0")
    block = engine.build_block(proposer=proposer.verify_key.encode(), time_ms=T0 + 5,
                               txs=[by("x", n) for n in range(1, 30)],
                               last_commit=certify(1, engine.tip()[1], [proposer]))
    assert reader.keys.count(member_key("x")) == 1  # one store read for 29 calls
    assert len(block.txs) == 29
    store.close()
