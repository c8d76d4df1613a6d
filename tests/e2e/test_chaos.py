"""A short seeded chaos run on four real processes (the long one: ``tests/e2e/chaos.py``).

Kills, pauses and partitions one node at a time under steady load, then checks agreement,
durability of every "committed" answer, no equivocation evidence and bounded recovery.
"""

from __future__ import annotations

import os

import pytest

from chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.e2e

CI_SECONDS = float(os.environ.get("JANGBU_CHAOS_SECONDS", "70"))


def test_chaos_run_keeps_every_committed_transaction_and_recovers(tmp_path):
    cfg = ChaosConfig(seconds=CI_SECONDS, seed=int(os.environ.get("JANGBU_CHAOS_SEED", "11")),
                      workers=3, fault_max_s=6.0)
    lines: list[str] = []
    result = run_chaos(tmp_path / "net", cfg, log=lines.append)
    print("\n".join(lines))
    print(result.details())
    print(result.summary())
    assert result.faults >= 5, result.fault_log
    assert len(result.committed) > 50, result.details()
    assert result.lost == 0, result.lost_examples
    assert result.divergent_heights == 0, result.divergence_examples
    assert result.duplicate_txs == 0
    assert result.evidence == 0, "an honest key signed conflicting votes"
    assert 0 <= result.recovered_in_s <= cfg.recover_bound_s, result.details()
    assert result.tracebacks == 0, "a node logged a traceback"
