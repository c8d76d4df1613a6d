"""A SIGKILL at any moment leaves the store at a fully committed height, never between."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.types import Commit

from ledger_support import make_genesis, open_engine

WRITER = Path(__file__).with_name("crash_writer.py")


def check_consistent(path: str) -> int:
    store, engine = open_engine(path, make_genesis())
    try:
        height = store.height
        if height == 0:
            return 0
        block = store.get_block(height)
        assert block is not None, "meta height points at a missing block"
        assert store.get_block(height + 1) is None, "a block beyond the committed height exists"
        assert Commit.from_obj(store.get_commit(height)).block_hash == block.hash
        assert len(store.receipts_of(height)) == len(block.txs)
        for tx in block.txs:
            assert store.tx_location(tx.hash) is not None
        # The state tree rebuilt from disk must match the last header's state root.
        assert engine.tree.root == block.header.state_root
        return height
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["foreground", "background"])
def test_sigkill_during_commits_never_leaves_half_a_block(tmp_path, mode):
    path = str(tmp_path / "data")
    rng = random.Random(7)
    heights = []
    for _ in range(25):
        child = subprocess.Popen([sys.executable, str(WRITER), path, mode],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().startswith("ready")
        time.sleep(rng.uniform(0.02, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        heights.append(check_consistent(path))
    # The chain only ever grows across kills, and it did grow.
    assert heights == sorted(heights)
    assert heights[-1] > 10
