"""``jangbu demo clearance|livestock`` against real 4- and 5-node networks, run twice each.

Also (no network needed): the sealing convention of the clearance demo, which customs must
be able to open with its member key.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from nacl.signing import SigningKey

from cli.demo import DEMO_BUYERS, make_demo_buyers, open_as_member, seal_to_member
from contracts.clearance import buyer_payload, buyer_ref

from netutil import ROOT, make_network


def run_demo(name: str, directory: object, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "demo", name, "--dir",
                           str(directory), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def started(tmp_path):
    nets = []

    def start(preset: str):
        net = make_network(tmp_path / preset, preset)
        nets.append(net)
        net.start_all()
        return net

    yield start
    for net in nets:
        net.stop_all()


def test_customs_opens_what_the_demo_seals_with_its_member_key():
    customs = SigningKey(bytes(range(32)))
    plaintext = buyer_payload(*DEMO_BUYERS[0])
    sealed = seal_to_member(customs.verify_key.encode(), plaintext)
    assert open_as_member(customs, sealed) == plaintext
    buyers = make_demo_buyers(customs.verify_key.encode(), b"s" * 16)
    assert buyers[0].buyer_ref == buyer_ref(b"s" * 16, DEMO_BUYERS[0][0])
    assert json.loads(open_as_member(customs, buyers[2].buyer_sealed))["pccc"] == \
        DEMO_BUYERS[2][0]


def test_invalid_network_directory_gives_one_line_reason(tmp_path):
    result = run_demo("clearance", tmp_path / "missing")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "genesis.json not found" in result.stderr


@pytest.mark.e2e
def test_clearance_demo_runs_twice_on_a_live_network(started):
    net = started("customs")
    first = run_demo("clearance", net.directory)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "pre_alert to seller" in out and "duty_assessed" in out
    assert out.count("ok  all 4 nodes answer the same history") == 3
    assert "customs (signed read) opens the sealed buyer data" in out
    assert "/track/" in out and "every node agrees" in out
    second = run_demo("clearance", net.directory, "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads(second.stdout)
    assert summary["ok"] and len(summary["steps"]) == 23
    assert {s["code"] for s in summary["steps"]} == {"OK"}
    assert summary["orders"][0] not in out  # a fresh prefix for the second run


@pytest.mark.e2e
def test_livestock_demo_runs_twice_on_a_live_network(started):
    net = started("livestock")
    first = run_demo("livestock", net.directory)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    for line in ("violation LATE_REPORT", "alert TEMPERATURE_HIGH", "recall_notice to meatco",
                 "E_WITHDRAWAL (as expected)", "E_RECALLED (as expected)",
                 "ok  all 5 nodes answer the same trace", "/trace/L0"):
        assert line in out, line
    assert (net.directory / "farm-b" / "devices" / "collar-1.key").exists()
    second = run_demo("livestock", net.directory, "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads(second.stdout)
    assert summary["ok"] and summary["lot"] not in out
    codes = [s["code"] for s in summary["steps"]]
    assert codes.count("E_WITHDRAWAL") == codes.count("E_WEIGHT") == 1
    assert "add_member" not in [s["action"] for s in summary["steps"]]  # devices reused
