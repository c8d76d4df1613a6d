"""Fuzzing what an authenticated (but Byzantine) peer can hand the consensus driver: any
decoded object as a peer message. The driver counts and drops bad input; its input loop
never sees an exception other than the ones it treats as a dropped input."""

from __future__ import annotations

import asyncio
import contextlib
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire_fuzz import _valid_vote_obj, objects

from consensus.types import InvalidMessage
from node.app import Node
from node.block import BlockError
from node.config import load_config

kinds = st.sampled_from(["c", "txs", "status", "get_blocks", "blocks", "x"])
diffs = st.fixed_dictionaries({"receipts": st.lists(st.binary(max_size=8) | objects, max_size=3),
                               "writes": st.lists(st.lists(st.binary(max_size=8) | objects,
                                                           min_size=2, max_size=2),
                                                  max_size=3)})
messages = st.one_of(
    objects,
    st.builds(lambda t, body: {"t": t, **body}, kinds,
              st.dictionaries(st.sampled_from(["m", "txs", "height", "from", "items"]),
                              objects, max_size=3)),
    st.builds(lambda v: {"t": "c", "m": {**_valid_vote_obj(), **v}},
              st.dictionaries(st.sampled_from(sorted(_valid_vote_obj())), objects, max_size=2)),
    st.builds(lambda items: {"t": "blocks", "items": items},
              st.lists(st.lists(objects, min_size=2, max_size=3), max_size=3)),
    st.builds(lambda block, cert, diff: {"t": "blocks", "items": [[block, cert, diff]]},
              objects, objects, diffs),
    st.builds(lambda start, want: {"t": "get_blocks", "from": start, "diffs": want},
              st.integers(-1, 5), objects),
)


@pytest.fixture(scope="module")
def node(network, tmp_path_factory):
    home = tmp_path_factory.mktemp("driver-fuzz") / "home"
    shutil.copytree(network.home("buyer"), home, ignore=shutil.ignore_patterns("data", "*.log"))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    built = Node(load_config(home))
    yield built, loop
    built.store.close()
    loop.close()
    asyncio.set_event_loop(None)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(messages, min_size=1, max_size=5))
def test_invalid_peer_messages_never_break_the_driver(node, batch):
    built, loop = node
    sender = next(iter(built.p2p._peers))

    async def feed() -> None:
        for msg in batch:
            built.driver.on_peer_message(sender, msg)
        while not built.driver.queue.empty():
            event = built.driver.queue.get_nowait()
            with contextlib.suppress(BlockError, InvalidMessage):
                built.driver._handle(event)

    loop.run_until_complete(feed())
    assert built.store.height == 0
