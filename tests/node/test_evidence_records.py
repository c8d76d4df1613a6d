"""Evidence of equivocation: what the driver keeps of it and how the API pages through it.
A real driver over a real store (no network); the API's handler over the same store.

Review findings: one Byzantine validator could have ~130 records kept per height (a
conflicting pair for every round up to ``max_round_ahead``, in both steps), and the API
paged by height only, so a page ending inside one height's records could not be resumed.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from consensus import canonical
from consensus.types import VOTE_TAG, Height, Round, Vote, VoteType
from node.api import Api
from node.driver import EVIDENCE_PER_VALIDATOR_HEIGHT, EVIDENCE_PREFIX, ConsensusDriver

from ledger_support import CHAIN_ID, seed_key

NAMES = ["v0", "v1", "v2", "v3"]


@pytest.fixture
def driver(driver_of_four: ConsensusDriver) -> ConsensusDriver:
    return driver_of_four


def signed_vote(name: str, kind: VoteType, height: int, round_: int, block: bytes) -> Vote:
    key = seed_key(name)
    body = Vote(kind, Height(height), Round(round_), block, bytes(key.verify_key))
    return replace(body, signature=canonical.sign(key, VOTE_TAG, CHAIN_ID,
                                                  body.sign_body()))


def conflict(name: str, kind: VoteType, height: int, round_: int) -> tuple[Vote, Vote]:
    return (signed_vote(name, kind, height, round_, b"a" * 32),
            signed_vote(name, kind, height, round_, b"b" * 32))


def records(driver: ConsensusDriver) -> list[bytes]:
    return [key for key, _ in driver.store.scan_records(EVIDENCE_PREFIX)]


def test_one_validator_gets_a_bounded_number_of_records_per_height(
        driver: ConsensusDriver) -> None:
    for round_ in range(65):
        for kind in VoteType:
            driver._record_evidence(*conflict("v1", kind, 3, round_))
    driver._record_evidence(*conflict("v2", VoteType.PREVOTE, 3, 0))  # another validator
    driver._record_evidence(*conflict("v1", VoteType.PREVOTE, 4, 0))  # the next height
    keys = records(driver)
    v1 = bytes(seed_key("v1").verify_key)
    at3 = [k for k in keys if k[2:10] == (3).to_bytes(8, "big") and k[10:42] == v1]
    assert len(at3) == EVIDENCE_PER_VALIDATOR_HEIGHT
    assert len(keys) == EVIDENCE_PER_VALIDATOR_HEIGHT + 2
    # Every conflict is still counted.
    assert "jangbu_evidence_total 132" in driver.metrics.render()


async def test_evidence_pages_resume_inside_one_height(driver: ConsensusDriver) -> None:
    for name in ("v1", "v2", "v3"):
        for round_ in range(3):
            driver._record_evidence(*conflict(name, VoteType.PRECOMMIT, 7, round_))
    api = Api(SimpleNamespace(store=driver.store))  # type: ignore[arg-type]  # what it reads
    app = web.Application()
    app.router.add_get("/v1/evidence", api.get_evidence)
    server = TestServer(app)
    await server.start_server()
    seen: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            query = "?from_height=7&limit=4"
            while True:
                async with session.get(server.make_url("/v1/evidence" + query)) as resp:
                    page = await resp.json()
                seen += page["evidence"]
                if not page["more"]:
                    assert "next" not in page
                    break
                query = f"?after={page['next']}&limit=4"
    finally:
        await server.close()
    assert len(seen) == 9 and len({item["id"] for item in seen}) == 9
    assert all(item["height"] == 7 and item["kind"] == "precommit" for item in seen)
    assert [item["id"] for item in seen] == sorted(item["id"] for item in seen)
