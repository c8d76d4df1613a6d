"""What starts a height this validator has no work for: its peers' messages of it.

Review (a Byzantine validator against three honest ones): one signed nil prevote for the
next height made an idle network start it and commit an empty block, as often as it liked
(13 empty blocks in 10 s). Now the round-0 proposal from its own proposer starts it, or
messages over f+1 distinct peer links (at least one honest validator is at work there).
A real driver over a real store; no network: messages are handed to it as the transport
does, with the authenticated sender.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from consensus import canonical
from consensus.types import (
    PROPOSAL_TAG,
    VOTE_TAG,
    Height,
    Proposal,
    Round,
    Vote,
    VoteType,
    message_to_obj,
)
from node.driver import ConsensusDriver

from driver_chain import validator_driver
from ledger_support import CHAIN_ID, add_member_tx, make_genesis, seed_key

NAMES = ["v0", "v1", "v2", "v3"]


@pytest.fixture
def driver(driver_of_four: ConsensusDriver) -> ConsensusDriver:
    return driver_of_four


def nil_prevote(name: str, height: int = 1, round_: int = 0) -> dict[str, Any]:
    key = seed_key(name)
    body = Vote(VoteType.PREVOTE, Height(height), Round(round_), None, bytes(key.verify_key))
    vote = replace(body, signature=canonical.sign(key, VOTE_TAG, CHAIN_ID, body.sign_body()))
    return {"t": "c", "m": message_to_obj(vote)}


def proposal_from(driver: ConsensusDriver, round_: int, height: int = 1) -> tuple[bytes, Any]:
    proposer = driver.vset.proposer(Height(height), Round(round_))
    name = next(n for n in NAMES if bytes(seed_key(n).verify_key) == proposer)
    block = b"some block bytes"
    body = Proposal(Height(height), Round(round_), Round(-1), canonical.digest(block), block,
                    proposer)
    signed = replace(body, signature=canonical.sign(seed_key(name), PROPOSAL_TAG,
                                                    driver.chain_id, body.sign_body()))
    return proposer, {"t": "c", "m": message_to_obj(signed)}


def sender(name: str) -> bytes:
    return bytes(seed_key(name).verify_key)


async def test_one_peers_message_does_not_start_an_idle_height(driver: ConsensusDriver) -> None:
    driver.on_peer_message(sender("v1"), nil_prevote("v1"))
    driver.on_peer_message(sender("v1"), nil_prevote("v1", round_=3))  # the same link again
    assert driver.started_height == 0


async def test_messages_over_f_plus_one_links_start_it(driver: ConsensusDriver) -> None:
    driver.on_peer_message(sender("v1"), nil_prevote("v1"))
    driver.on_peer_message(sender("v2"), nil_prevote("v2"))  # f + 1 = 2 of 4
    assert driver.started_height == 1


async def test_the_round_zero_proposal_from_its_proposer_starts_it(
        driver: ConsensusDriver) -> None:
    proposer, message = proposal_from(driver, 0)
    if proposer == driver.pubkey:
        pytest.skip("this validator proposes round 0 of height 1")
    driver.on_peer_message(proposer, message)
    assert driver.started_height == 1


async def test_a_relayed_or_later_round_proposal_counts_as_one_link(
        driver: ConsensusDriver) -> None:
    proposer, message = proposal_from(driver, 0)
    relay = next(sender(n) for n in NAMES[1:] if sender(n) != proposer)
    driver.on_peer_message(relay, message)  # not from its proposer's own link
    assert driver.started_height == 0
    later_proposer, later = proposal_from(driver, 1)
    if later_proposer in (driver.pubkey, relay):
        return
    driver.on_peer_message(later_proposer, later)  # a second link: f + 1
    assert driver.started_height == 1


async def test_work_whose_gossip_was_lost_still_commits(tmp_path: Any) -> None:
    """Review of the start rule above: a validator cut off while a client submitted to it
    started the height alone; its transaction's gossip (sent once, not relayed) reached
    nobody, its peers had no work and one link's messages do not start a height, so the
    height stalled. A height that makes no progress now sends its pending transactions
    again, and the peers start. Four real drivers over real stores in one event loop; the
    links are function calls that can be cut."""
    genesis = make_genesis(NAMES)
    drivers = {name: validator_driver(tmp_path, genesis, name) for name in NAMES}
    linked = dict.fromkeys(NAMES, True)

    def link(name: str) -> Any:
        def broadcast(msg: Any) -> None:
            for other, driver in drivers.items():
                if other != name and linked[name] and linked[other]:
                    asyncio.get_running_loop().call_soon(
                        driver.on_peer_message, drivers[name].pubkey, msg)
        return broadcast

    for name, driver in drivers.items():
        driver.broadcast = link(name)
        await driver.start()
    try:
        round0 = drivers["v0"].vset.proposer(Height(1), Round(0))
        busy = next(name for name in NAMES if drivers[name].pubkey != round0)
        linked[busy] = False
        drivers[busy].submit_local(add_member_tx(seed_key("admin"), "lost-gossip", 1))
        await asyncio.sleep(0.3)  # its one gossip went nowhere
        linked[busy] = True
        for _ in range(150):
            if all(driver.store.height >= 1 for driver in drivers.values()):
                break
            await asyncio.sleep(0.1)
        assert {name: d.store.height for name, d in drivers.items()} == dict.fromkeys(NAMES, 1)
    finally:
        for driver in drivers.values():
            await driver.stop()
            driver.store.close()


def forged_prevote(name: str, height: int = 1, round_: int = 0) -> dict[str, Any]:
    """A prevote claiming ``name`` whose signature is not ``name``'s."""
    message = nil_prevote(name, height, round_)
    message["m"] = {**message["m"], "body": {**message["m"]["body"], "signature": bytes(64)}}
    return message


def drain(driver: ConsensusDriver) -> None:
    while not driver.queue.empty():
        driver._handle(driver.queue.get_nowait())


async def test_a_bad_signature_mutes_that_links_consensus_messages(
        driver: ConsensusDriver) -> None:
    """Review: a validator's link flooding consensus messages with bad signatures cost every
    honest node a decode and a signature check each (~12% CPU at one script's rate), with
    no end; transaction gossip was muted for that, consensus messages were not."""
    from node.driver import PEER_CONSENSUS_MUTE_S

    driver._start_height(1)
    drain(driver)
    driver.on_peer_message(sender("v1"), forged_prevote("v1", 1, 0))
    drain(driver)
    assert driver.core.rejected["bad_signature"] == 1
    for round_ in range(1, 50):  # then dropped before they are decoded or checked
        driver.on_peer_message(sender("v1"), forged_prevote("v1", 1, round_))
    assert driver.queue.empty()
    assert "jangbu_p2p_muted_consensus_total 49" in driver.metrics.render()
    # Another link is not affected, and the mute ends.
    driver.on_peer_message(sender("v2"), nil_prevote("v2"))
    assert not driver.queue.empty()
    drain(driver)
    driver._consensus_muted_until[sender("v1")] -= PEER_CONSENSUS_MUTE_S
    driver.on_peer_message(sender("v1"), nil_prevote("v1", 1, 1))
    assert not driver.queue.empty()


async def test_unasked_blocks_answers_are_taken_once_a_second_per_peer(
        driver: ConsensusDriver) -> None:
    """Review: a peer sent 3.6 MB of old fake blocks twenty times a second; each answer was
    decoded whole before its heights were known (~34% of every honest node's CPU). An
    answer the sync does not wait on is now taken at most once a second per peer."""
    junk = {"t": "blocks", "items": [[b"not a block", {}]]}
    for _ in range(20):
        driver.on_peer_message(sender("v1"), junk)
    driver.on_peer_message(sender("v2"), junk)  # another peer has its own allowance
    assert driver.queue.qsize() == 2
    assert "jangbu_sync_ignored_total 19" in driver.metrics.render()
    # The answer the sync waits on is always taken.
    driver._sync_expect = (sender("v1"), 1)
    driver.on_peer_message(sender("v1"), junk)
    assert driver.queue.qsize() == 3
