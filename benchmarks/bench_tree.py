"""CPU of the state tree per block: preview + apply of a block's writes, on a real store.

Builds a LevelDB store holding ``--keys`` state keys (``--value-bytes`` each), loads its
tree as a restarted node does, then runs ``--blocks`` blocks of ``--writes`` writes (two
thirds to existing keys, one third new) through two trees loaded from the same store: one
with the compiled bucket loops (``merge_buckets``, ``cache_buckets``), one with those two
hidden (the Python loops they replace; every other compiled loop stays on). The trees take
turns going first, so both see the same minutes of a machine whose speed varies. Prints
CPU milliseconds per block for each and checks that both give the same roots and caches.

    .venv/bin/python benchmarks/bench_tree.py [--keys 175000] [--blocks 40] [--writes 3000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node import state_tree
from node.store import LedgerStore

HIDDEN = ("merge_buckets", "cache_buckets")


def without_bucket_loops(compiled: types.ModuleType) -> types.SimpleNamespace:
    """The compiled module with the two bucket loops stepping aside (returning None)."""
    names = {name: getattr(compiled, name) for name in dir(compiled) if not name.startswith("_")}
    names.update({name: (lambda *args: None) for name in HIDDEN})
    return types.SimpleNamespace(**names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=175_000)
    parser.add_argument("--value-bytes", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--writes", type=int, default=3_000)
    args = parser.parse_args()
    compiled = state_tree._compiled
    if compiled is None:
        sys.exit("the compiled tree loops are not built (pip install -e .)")
    rng = random.Random(1)
    keys = [b"order/%08d" % i for i in range(args.keys)]
    work = Path(tempfile.mkdtemp(prefix="jangbu-tree-"))
    try:
        store = LedgerStore.open(str(work / "data"), chain_id="bench", genesis_hash=b"\0" * 32)
        store.initialise(chain_id="bench", genesis_hash=b"\0" * 32,
                         state={key: rng.randbytes(args.value_bytes) for key in keys})
        modes = {"python loops": without_bucket_loops(compiled), "compiled": compiled}
        trees = {}
        for name, mode in modes.items():
            state_tree._fast = mode
            trees[name] = state_tree.StateTree.load(store.leaves)
        cpu = dict.fromkeys(modes, 0.0)
        for number in range(args.blocks):
            existing = args.writes * 2 // 3
            writes = {rng.choice(keys): rng.randbytes(args.value_bytes) for _ in range(existing)}
            writes.update({b"new/%d/%d" % (number, i): rng.randbytes(args.value_bytes)
                           for i in range(args.writes - existing)})
            order = list(modes) if number % 2 == 0 else list(reversed(modes))
            roots = set()
            for name in order:
                state_tree._fast = modes[name]
                started = time.process_time()
                delta = trees[name].preview(writes, store.leaves)
                trees[name].apply(delta)
                cpu[name] += time.process_time() - started
                roots.add(delta.root)
            assert len(roots) == 1, "the two trees disagree"
            with store.db.write_batch() as batch:  # what a commit writes to the leaf index
                for key, vhash in delta.leaf_writes.items():
                    if vhash is None:
                        batch.delete(key)
                    else:
                        batch.put(key, vhash)
            keys.extend(key for key in writes if key.startswith(b"new/"))
        first, second = (trees[name] for name in modes)
        assert list(first._cache.items()) == list(second._cache.items()), "caches differ"
        state_tree._fast = compiled
        store.close()
        print(f"{args.keys:,} keys, {args.blocks} blocks of {args.writes:,} writes")
        for name, seconds in cpu.items():
            print(f"{name:<14} {seconds / args.blocks * 1000:7.2f} ms CPU per block "
                  f"(preview + apply)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
