"""Transaction gossip is cut into messages that fit the canonical message limit.

Regression (review): up to 2,000 transactions went into one gossip message whatever their
size, so 70 valid transactions of ~60 KB each that a client submitted in one HTTP batch
made a 4.2 MB message; encoding it raised (the limit is 4 MiB), the error went to the log
with a traceback, and the batch was dropped: the other validators never saw it.
"""

from __future__ import annotations

from typing import Any

import pytest

from consensus import canonical
from node.driver import TX_GOSSIP_BATCH
from node.tx import Transaction

from driver_chain import Chain
from ledger_support import CHAIN_ID, seed_key


def padded_tx(nonce: int, pad: int) -> Transaction:
    """A valid membership transaction carrying ``pad`` bytes of an extra argument (the
    contract's check accepts it) and so ~``pad`` bytes long."""
    return Transaction.create(seed_key("admin"), CHAIN_ID, "membership", "add_member",
                              {"pubkey": seed_key(f"m{nonce}").verify_key.encode().hex(),
                               "label": f"m{nonce}", "pad": "p" * pad}, nonce)


def gossiped(sent: list[Any]) -> list[list[bytes]]:
    return [message["txs"] for message in sent
            if isinstance(message, dict) and message.get("t") == "txs"]


@pytest.mark.asyncio
async def test_large_transactions_are_gossiped_in_messages_under_the_limit(
        tmp_path: Any) -> None:
    chain = Chain(tmp_path)
    txs = [padded_tx(nonce, 60_000) for nonce in range(1, 71)]
    assert sum(len(tx.encoded) for tx in txs) > canonical.MAX_MESSAGE_BYTES
    for tx in txs:
        chain.driver.submit_local(tx)
    chain.driver._flush_gossip_now()
    messages = gossiped(chain.sent)
    assert len(messages) >= 2
    for message in messages:
        canonical.encode({"t": "txs", "txs": message})  # raised for the single message
    assert [raw for message in messages for raw in message] == [tx.encoded for tx in txs]
    await chain.driver.stop()


@pytest.mark.asyncio
async def test_small_transactions_still_go_by_the_count(tmp_path: Any) -> None:
    chain = Chain(tmp_path)
    chain.driver._gossip_txs = [b"x" * 100] * (TX_GOSSIP_BATCH + 1)
    chain.driver._flush_gossip_now()
    assert [len(message) for message in gossiped(chain.sent)] == [TX_GOSSIP_BATCH, 1]
    await chain.driver.stop()
