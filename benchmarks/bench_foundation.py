"""Foundation rates: canonical encode/decode, Ed25519 sign/verify, state-root update cost.

    .venv/bin/python benchmarks/bench_foundation.py

The state-root part compares the bucketed Merkle tree jangbu uses (2**16 buckets, 16-level
upper tree) with a binary sparse Merkle tree over 256-bit key hashes (the other candidate
in DESIGN.md), both in pure Python, as the cost of one block's root update per 1,000 writes
on top of a state that already holds ``--keys`` entries.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plyvel
from nacl.signing import SigningKey

from consensus import canonical
from node.state_tree import StateTree
from node.tx import Transaction


def rate(label: str, n: int, fn) -> None:
    started = time.process_time()
    for _ in range(n):
        fn()
    elapsed = time.process_time() - started
    print(f"{label:<44} {n / elapsed:>12,.0f} /s   {elapsed * 1e6 / n:8.1f} us")


class Leaves:
    """The ``l/`` leaf index in a real LevelDB, as the node keeps it."""

    def __init__(self) -> None:
        self.db = plyvel.DB(tempfile.mkdtemp(), create_if_missing=True)

    def scan(self, prefix: bytes):
        return self.db.iterator(prefix=prefix)

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        with self.db.write_batch() as batch:
            for key, value in writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)


class SparseMerkle:
    """Reference cost model: a 256-level sparse Merkle tree, one path update per write."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, bytes], bytes] = {}
        self.empty = [b"\x00" * 32]
        for _ in range(256):
            self.empty.append(hashlib.sha256(self.empty[-1] * 2).digest())

    def update(self, key: bytes, value: bytes) -> None:
        path = int.from_bytes(hashlib.sha256(key).digest(), "big")
        node = hashlib.sha256(value).digest()
        for level in range(256):
            prefix = (path >> level).to_bytes(32, "big")
            sibling_key = (level, ((path >> level) ^ 1).to_bytes(32, "big"))
            sibling = self.nodes.get(sibling_key, self.empty[level])
            left, right = (sibling, node) if (path >> level) & 1 else (node, sibling)
            self.nodes[(level, prefix)] = node
            node = hashlib.sha256(left + right).digest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    key = SigningKey(b"\x01" * 32)
    tx = Transaction.create(key, "bench", "clearance", "create_order", {
        "order_id": "O-1", "courier": "courier", "buyer_platform": "buyer",
        "buyer_ref": "ab" * 32, "buyer_sealed": "c2VhbGVk" * 20, "currency": "USD",
        "ship_from": "US", "items": [{"hs": "6109.10-0000", "description": "T-shirt",
                                      "kind": "general", "quantity": 1, "unit_price": 1500}]},
        1)
    obj = tx.to_obj()
    raw = tx.encoded
    print(f"transaction: {len(raw)} bytes canonical")
    rate("canonical encode (transaction)", 20_000, lambda: canonical.encode(obj))
    rate("canonical decode + check (transaction)", 20_000, lambda: canonical.decode(raw))
    rate("Transaction.decode (wire -> checked object)", 20_000, lambda: Transaction.decode(raw))
    message = tx.signed_bytes
    rate("Ed25519 sign", 5_000, lambda: key.sign(message))
    sig = tx.sig
    pub = tx.signer
    rate("Ed25519 verify", 5_000, lambda: canonical.verify_raw(pub, message, sig))

    print(f"\nstate root update, 1,000 writes per block, on {args.keys:,} existing keys")
    leaves = Leaves()
    tree = StateTree()
    base = {f"clearance/order/{i}".encode(): b"v" * 400 for i in range(args.keys)}
    delta = tree.preview(base, leaves)
    tree.apply(delta)
    leaves.apply(dict(delta.leaf_writes))
    for block in range(3):
        writes = {f"clearance/order/{block}-{i}".encode(): b"w" * 400 for i in range(1000)}
        started = time.process_time()
        delta = tree.preview(writes, leaves)
        elapsed = time.process_time() - started
        tree.apply(delta)
        leaves.apply(dict(delta.leaf_writes))
        print(f"  bucketed tree (2^16 buckets)    {elapsed * 1000:8.1f} ms per 1,000 writes")
    proof = tree.prove(b"clearance/order/7", leaves)
    print(f"  proof size: {len(proof.entries)} bucket entries + {len(proof.path)} hashes")
    smt = SparseMerkle()
    started = time.process_time()
    for i in range(1000):
        smt.update(f"clearance/order/x{i}".encode(), b"w" * 400)
    elapsed = time.process_time() - started
    print(f"  sparse Merkle tree (256 levels) {elapsed * 1000:8.1f} ms per 1,000 writes")


if __name__ == "__main__":
    main()
