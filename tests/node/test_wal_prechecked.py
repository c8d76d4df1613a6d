"""A consensus message the core refuses is never written to the consensus WAL.

Regression (review): every received vote and proposal was written to the WAL before the
core looked at it, so a Byzantine peer's 200 proposals of 1 MB for a decided height, with
random signatures, grew an idle node's WAL by 200 MB (it shrinks only at a commit).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from consensus import canonical
from consensus.events import VoteReceived
from consensus.types import VOTE_TAG, Height, Round, Vote, VoteType, message_to_obj

from driver_chain import Chain
from ledger_support import CHAIN_ID, seed_key


def signed_vote(height: int, *, forged: bool = False) -> Vote:
    key = seed_key("v0")
    body = Vote(VoteType.PREVOTE, Height(height), Round(5), None, key.verify_key.encode())
    signature = (b"\0" * 64 if forged
                 else canonical.sign(key, VOTE_TAG, CHAIN_ID, body.sign_body()))
    return replace(body, signature=signature)


@pytest.mark.asyncio
async def test_refused_peer_messages_do_not_reach_the_wal(tmp_path: Any) -> None:
    chain = Chain(tmp_path)
    written: list[Any] = []
    append = chain.driver._wal_append

    def recording(event: Any) -> None:
        written.append(event)
        append(event)

    chain.driver._wal_append = recording  # type: ignore[method-assign]
    await chain.driver.start()
    try:
        chain.submit()
        await chain.until_height(1)
        peer = seed_key("v1").verify_key.encode()
        old = signed_vote(1)  # a decided height
        forged = signed_vote(2, forged=True)
        for vote in (old, forged):
            chain.driver.on_peer_message(peer, {"t": "c", "m": message_to_obj(vote)})
        for _ in range(100):
            if chain.driver.core.rejected["bad_signature"]:
                break
            await asyncio.sleep(0.01)
        recorded = [event.vote for event in written if isinstance(event, VoteReceived)]
        assert old not in recorded and forged not in recorded
        assert chain.driver.core.rejected["old_height"] >= 1
        assert chain.driver.core.rejected["bad_signature"] == 1
    finally:
        await chain.driver.stop()

