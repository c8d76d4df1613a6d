"""A small run of ``jangbu bench`` completes and reports sane fields (no timing asserts)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netutil import ROOT, make_network, run_bench

pytestmark = pytest.mark.e2e


def test_bench_smoke_run_reports_every_field(tmp_path):
    net = make_network(tmp_path / "net")
    net.start_all()
    try:
        result = run_bench(net, 300, 50)
    finally:
        net.stop_all()
    for field in ("tx_per_s", "p50_ms", "p95_ms", "p99_ms", "committed", "rejected",
                  "offered_rate", "blocks", "mean_block_txs", "verify_bound_tx_per_s",
                  "bound_fraction", "node_cpu_us_per_tx"):
        assert field in result, field
    assert result["committed"] == 300 and result["rejected"] == 0
    assert result["blocks"] >= 1 and result["tx_per_s"] > 0
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert 0 < result["bound_fraction"] < 1
    # Every node checks each transaction's signature (~40-90 µs) and executes it: the
    # CPU per node and transaction, read from the nodes' /metrics, is no less than that.
    assert 20 < result["node_cpu_us_per_tx"] < 1_000_000


def test_invalid_bench_without_a_network_fails_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("jangbu: error:") and "genesis.json" in out.stderr
