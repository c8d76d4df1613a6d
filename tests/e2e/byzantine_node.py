"""A test-only Byzantine node: the real node, with its driver monkeypatched (never in prod).

    python tests/e2e/byzantine_node.py --home HOME --mode MODE [--p2p-listen A] [--api-listen A]

Modes (the node keeps its own validator key, so the others treat it as one of n = 3f+1):

* ``equivocate``: every vote it signs is followed by a conflicting vote for a random
  block, signed directly with the key (bypassing the signer guard), to every peer;
* ``garbage``: besides behaving normally it sends, many times a second, malformed
  messages, votes and proposals with bad signatures, votes from keys outside the validator
  set, votes it signs for other validators' keys, bogus sync answers, and a status that
  claims an enormous height;
* ``liar``: it takes no part in consensus, claims (in its status) an enormous height and
  never answers block-sync requests, so honest nodes that believe it wait for blocks;
* ``flood``: it floods peers with gossip of invalidly signed transactions, repeated
  block-sync requests from height 1 and consensus messages for far-future heights.

Twins (two processes with the same key) need no patch: copy a home and start the copy with
other ports through ``jangbu node start --p2p-listen/--api-listen``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib

from nacl.signing import SigningKey

from consensus import canonical
from consensus.actions import Broadcast
from consensus.types import PROPOSAL_TAG, VOTE_TAG, Proposal, Vote, VoteType, message_to_obj
from node.app import Node, setup_logging
from node.config import load_config


def _signed_vote(key: SigningKey, chain_id: str, vote: Vote) -> Vote:
    unsigned = Vote(vote.vote_type, vote.height, vote.round, vote.block_hash,
                    key.verify_key.encode())
    sig = key.sign(canonical.sign_bytes(VOTE_TAG, chain_id, unsigned.sign_body())).signature
    return Vote(unsigned.vote_type, unsigned.height, unsigned.round, unsigned.block_hash,
                unsigned.validator, bytes(sig))


def patch_equivocate(node: Node) -> None:
    driver = node.driver
    original = driver._perform
    rng = random.Random()

    def perform(action: Any) -> None:
        original(action)
        msg = getattr(action, "message", None)
        if isinstance(action, Broadcast) and isinstance(msg, Vote) \
                and msg.validator == node.pubkey:
            other = rng.randbytes(32)
            twin = _signed_vote(node.key, node.chain_id, Vote(
                msg.vote_type, msg.height, msg.round, other, msg.validator))
            driver.broadcast({"t": "c", "m": message_to_obj(twin)})
        if isinstance(action, Broadcast) and isinstance(msg, Proposal) \
                and msg.proposer == node.pubkey:
            # A second block for the same round (its hash does not match its bytes, so
            # nobody takes it; what matters is that two signed proposals conflict).
            body = Proposal(msg.height, msg.round, msg.pol_round, rng.randbytes(32),
                            msg.block, msg.proposer)
            sig = node.key.sign(canonical.sign_bytes(PROPOSAL_TAG, node.chain_id,
                                                     body.sign_body())).signature
            twin_proposal = Proposal(body.height, body.round, body.pol_round, body.block_hash,
                                     body.block, body.proposer, bytes(sig))
            driver.broadcast({"t": "c", "m": message_to_obj(twin_proposal)})

    driver._perform = perform  # type: ignore[method-assign]


def _garbage_messages(node: Node, rng: random.Random) -> list[Any]:
    height = node.store.height + 1
    others = [v for v in node.genesis.validator_pubkeys() if v != node.pubkey]
    victim = rng.choice(others)
    outsider = SigningKey.generate()
    vote = Vote(VoteType.PREVOTE, height, 0, rng.randbytes(32), victim, rng.randbytes(64))
    forged_with_own_key = Vote(VoteType.PRECOMMIT, height, 0, rng.randbytes(32), victim,
                               bytes(node.key.sign(b"x").signature))
    outsider_vote = _signed_vote(outsider, node.chain_id,
                                 Vote(VoteType.PRECOMMIT, height, 0, rng.randbytes(32), b""))
    wrong_chain_vote = _signed_vote(node.key, "another-chain",
                                    Vote(VoteType.PREVOTE, height, 0, rng.randbytes(32), b""))
    bad_proposal = Proposal(height, 0, -1, rng.randbytes(32), rng.randbytes(200), victim,
                            rng.randbytes(64))
    return [
        rng.randbytes(rng.randrange(1, 300)),
        [1, 2, 3],
        {"t": "nope"},
        {"t": "c", "m": {"kind": "vote", "junk": True}},
        {"t": "c", "m": rng.randbytes(50)},
        {"t": "c", "m": message_to_obj(vote)},
        {"t": "c", "m": message_to_obj(forged_with_own_key)},
        {"t": "c", "m": message_to_obj(outsider_vote)},
        {"t": "c", "m": message_to_obj(wrong_chain_vote)},
        {"t": "c", "m": message_to_obj(bad_proposal)},
        {"t": "txs", "txs": [rng.randbytes(100), 5, None]},
        {"t": "txs", "txs": "not a list"},
        {"t": "status", "height": 10**12},
        {"t": "status", "height": -5},
        {"t": "status", "height": "high"},
        {"t": "get_blocks", "from": -1},
        {"t": "get_blocks", "from": 10**15},
        {"t": "blocks", "items": [[rng.randbytes(80), {"junk": 1}], 7, None]},
        {"t": "blocks", "items": "x"},
    ]


async def garbage_task(node: Node) -> None:
    rng = random.Random()
    while True:
        await asyncio.sleep(0.05)
        for msg in _garbage_messages(node, rng):
            with contextlib.suppress(ValueError, canonical.CanonicalError):
                node.p2p.broadcast(msg)


def patch_liar(node: Node) -> None:
    driver = node.driver
    driver._serve_blocks = lambda *args: None  # type: ignore[method-assign]
    original = driver._perform

    def perform(action: Any) -> None:
        if not isinstance(action, Broadcast):
            original(action)

    driver._perform = perform  # type: ignore[method-assign]


async def liar_task(node: Node) -> None:
    while True:
        await asyncio.sleep(0.2)
        node.p2p.broadcast({"t": "status", "height": node.store.height + 10**6})


async def flood_task(node: Node) -> None:
    rng = random.Random()
    junk_txs = [canonical.encode({"chain_id": node.chain_id, "contract": "membership",
                                  "action": "add_member", "args": {"pubkey": rng.randbytes(32)},
                                  "nonce": i, "signer": rng.randbytes(32),
                                  "sig": rng.randbytes(64)}) for i in range(500)]
    while True:
        await asyncio.sleep(0.01)
        node.p2p.broadcast({"t": "txs", "txs": junk_txs})
        node.p2p.broadcast({"t": "get_blocks", "from": 1})
        far = Vote(VoteType.PREVOTE, node.store.height + 1000, rng.randrange(0, 50),
                   rng.randbytes(32), node.pubkey)
        node.p2p.broadcast({"t": "c", "m": message_to_obj(_signed_vote(node.key, node.chain_id,
                                                                       far))})


async def run(args: argparse.Namespace) -> None:
    config = load_config(args.home).with_overrides(p2p_listen=args.p2p_listen,
                                                   api_listen=args.api_listen)
    setup_logging("INFO", "text")
    node = Node(config)
    tasks: list[asyncio.Task[Any]] = []
    if args.mode == "equivocate":
        patch_equivocate(node)
    elif args.mode == "liar":
        patch_liar(node)
    await node.start()
    if args.mode == "garbage":
        tasks.append(asyncio.create_task(garbage_task(node)))
    elif args.mode == "flood":
        tasks.append(asyncio.create_task(flood_task(node)))
    elif args.mode == "liar" and not os.environ.get("JANGBU_BYZ_NO_LIE"):
        tasks.append(asyncio.create_task(liar_task(node)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--mode", choices=["equivocate", "garbage", "flood", "liar", "honest"],
                        required=True)
    parser.add_argument("--p2p-listen")
    parser.add_argument("--api-listen")
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parents[2])
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
