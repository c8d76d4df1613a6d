"""Nodes on the compiled code paths and nodes on the pure-Python ones agree on every root.

Two validators run with ``JANGBU_PURE_CODEC=1 JANGBU_PURE_TREE=1 JANGBU_PURE_CONTRACTS=1
JANGBU_SERIAL_SIGCHECK=1`` (the canonical encoder, the state-tree loops and the clearance
contract in Python, every signature checked by PyNaCl's libsodium call), two with the
compiled extensions, the mypyc-compiled contract and signatures checked from key tables
(node/_ed25519_keyed.c). Proposers rotate, so
each kind of node validates blocks whose roots the other kind computed: one disagreement
would make half the validators refuse a proposal, and with two on each side no block could
gather the three prevotes it needs. Real processes, real LevelDB, a real workflow load.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from consensus import canonical
from contracts.clearance import compiled as clearance_build
from node import sigcheck, state_tree

from netutil import make_network, run_bench

pytestmark = pytest.mark.e2e

PURE = {"JANGBU_PURE_CODEC": "1", "JANGBU_PURE_TREE": "1", "JANGBU_PURE_CONTRACTS": "1",
        "JANGBU_SERIAL_SIGCHECK": "1"}


def metric(api: str, name: str) -> float:
    text = urllib.request.urlopen(api + "/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.skipif(canonical._compiled_encode is None or state_tree._compiled is None
                    or not clearance_build.is_compiled() or not sigcheck.keyed_checks(),
                    reason="needs the compiled extensions built (CI builds them)")
def test_pure_and_compiled_nodes_agree_on_every_block(tmp_path):
    net = make_network(tmp_path / "net")
    pure_orgs = net.orgs[:2]
    for org in net.orgs:
        net.start(org, PURE if org in pure_orgs else None)
    net.wait_connected()
    try:
        run_bench(net, 600, 50)
        top = net.assert_identical_chains()
        assert top >= 2
        for org in net.orgs:
            assert metric(net.api(org), "jangbu_blocks_committed_total") == top  # parsed
            assert metric(net.api(org), "jangbu_invalid_proposals_total") == 0, \
                net.log_tail(org, 40)
            log = (net.home(org) / "node.log").read_text(errors="replace")
            kind = "pure Python" if org in pure_orgs else "compiled"
            assert f"state tree loops: {kind}" in log
            assert f"canonical encoder: {kind}" in log
            assert ("clearance contract: source (JANGBU_PURE_CONTRACTS=1)" if org in pure_orgs
                    else "clearance contract: compiled (mypyc)") in log
            assert ("signature checks of keys seen before: libsodium" if org in pure_orgs
                    else "signature checks of keys seen before: from their tables") in log
            from_tables = metric(net.api(org), "jangbu_signature_checks_from_tables_total")
            assert (from_tables == 0) == (org in pure_orgs), (org, from_tables)
        # Each node's own tree (computed by its own code path) matches the certified root:
        # a restarted node checks exactly that before it serves anything.
        for org in net.orgs:
            net.kill(org)
            net.start(org, PURE if org in pure_orgs else None)
        net.wait_connected()
        assert net.assert_identical_chains() == top
    finally:
        net.stop_all()
