"""Block pacing across real node processes: a trickle of transactions to every node.

One node's pacing holds its own start back; the others start a height the moment a
consensus message of it arrives. This checks the whole arrangement on four processes: the
trickle still commits, on every node, in fewer and larger blocks, spaced by the interval.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
from nacl.signing import SigningKey

from node.client import Client

from netutil import make_network

pytestmark = pytest.mark.e2e

PACE_MS = 500  # at most half of timeout_propose_ms (1,000 by default)
TRICKLE = 12
SPACING_S = 0.1  # the trickle lasts ~1.2 s: without pacing, about one height per transaction


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    net = make_network(tmp_path_factory.mktemp("pacing") / "net",
                       consensus={"min_block_interval_ms": PACE_MS})
    net.start_all()
    yield net
    net.stop_all()


def test_a_trickle_commits_in_paced_blocks_on_every_node(network):
    orgs = list(network.orgs)

    async def one(i: int) -> dict:
        await asyncio.sleep(i * SPACING_S)
        org = orgs[i % len(orgs)]  # each node in turn takes the trickle
        async with Client(network.api(org), key=network.member_key(org)) as client:
            pubkey = SigningKey.generate().verify_key.encode().hex()
            return await client.call("membership", "add_member", {"pubkey": pubkey})

    async def go() -> tuple[list[dict], list[dict]]:
        receipts = await asyncio.gather(*(one(i) for i in range(TRICKLE)))
        heights = sorted({r["height"] for r in receipts})
        async with Client(network.api(orgs[-1])) as client:
            blocks = [await client.block(h) for h in heights]
        return list(receipts), blocks

    receipts, blocks = asyncio.run(go())
    assert all(r["code"] == "OK" for r in receipts), receipts
    heights = [b["header"]["height"] for b in blocks]
    # ~1.2 s of trickle at one block per 0.5 s at most: 3-4 heights, not ~12.
    assert len(heights) <= 5, heights
    times = [b["header"]["time_ms"] for b in blocks]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    # Each gap spans about a pace (each proposer paces from when it started the height
    # before, by its own clock); without pacing the gaps are ~100 ms.
    assert all(gap >= PACE_MS / 2 for gap in gaps), gaps
    last = heights[-1]
    for org in orgs:  # every node has the paced blocks, not only the ones that proposed
        assert network.status(org)["height"] >= last
