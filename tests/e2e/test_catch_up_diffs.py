"""Catch-up from certified diffs, on real node processes.

A wiped node fetches blocks from its peers; peers that still hold a block's state writes
and receipts in memory send them along, and the node applies them (checked against the
block's certified roots) instead of executing the block. Peers that were restarted hold
none, and the node then executes every block as before. Either way it ends with the same
chain and the same state as the others.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time

import pytest
from test_network_processes import member_txs, submit_all, wait_committed

from netutil import Network, make_network

pytestmark = pytest.mark.e2e

VICTIM = "buyer"
OTHERS = ["customs", "seller", "courier"]


def metric(net: Network, org: str, name: str) -> float:
    return net.metric(org, name)


def load(net: Network, per_org: int, start: int) -> None:
    batch = {org: member_txs(net, org, per_org, start=start) for org in OTHERS}
    asyncio.run(submit_all(net, batch))
    wait_committed(net, "customs", [tx for txs in batch.values() for tx in txs])


def rebuild_victim(net: Network) -> None:
    net.kill(VICTIM, signal.SIGTERM)
    shutil.rmtree(net.home(VICTIM) / "data")
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    net.wait_height(net.status("customs")["height"], [VICTIM], timeout=120)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = make_network(tmp_path_factory.mktemp("diffs") / "net")
    network.start_all()
    yield network
    network.stop_all()


def test_a_wiped_node_catches_up_from_its_peers_diffs(net):
    load(net, 120, start=1)
    rebuild_victim(net)
    height = net.status("customs")["height"]
    assert metric(net, VICTIM, "jangbu_sync_diffs_applied_total") >= height - 1
    assert metric(net, VICTIM, "jangbu_sync_diffs_rejected_total") == 0
    # It keeps up afterwards, and nothing differs from the nodes that executed.
    load(net, 20, start=int(time.time() * 1000))
    net.wait_height(net.status("customs")["height"], [VICTIM])
    net.assert_identical_chains()
    assert net.status(VICTIM)["state_root"] == net.status("customs")["state_root"]


def test_without_diffs_at_its_peers_a_wiped_node_executes_every_block(net):
    for org in OTHERS:  # restarted peers hold no diffs
        net.kill(org, signal.SIGTERM)
        net.start(org)
        net.wait_ready(org)
    net.wait_connected()
    rebuild_victim(net)
    assert metric(net, VICTIM, "jangbu_sync_diffs_applied_total") == 0
    assert metric(net, VICTIM, "jangbu_sync_blocks_total") >= net.status("customs")["height"] - 1
    load(net, 20, start=int(time.time() * 1000) + 1_000_000)
    net.wait_height(net.status("customs")["height"], [VICTIM])
    net.assert_identical_chains()
