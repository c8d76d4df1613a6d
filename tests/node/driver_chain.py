"""A one-validator chain around a real consensus driver, for the driver's own tests."""

from __future__ import annotations

import asyncio
from typing import Any

from consensus import canonical
from consensus.wal import WalRecord
from node.driver import ConsensusDriver
from node.engine import SignatureCache
from node.events import EventBus
from node.execution import committed_member_lookup
from node.mempool import Mempool
from node.metrics import Metrics
from node.signer_state import SignerStateFile
from node.verified_signatures import VerifiedSignatures
from node.wal_file import decode_records

from ledger_support import add_member_tx, certify, make_genesis, open_engine, seed_key


class Chain:
    """A one-validator chain run by a real driver (real store, engine, signer guard file),
    no network: the single validator decides every height alone."""

    def __init__(self, tmp_path: Any, consensus: dict[str, int] | None = None,
                 vote_signatures: VerifiedSignatures | None = None) -> None:
        self.genesis = make_genesis(["v0"], consensus=consensus)
        self.store, self.engine = open_engine(str(tmp_path / "data"), self.genesis)
        self.mempool = Mempool(
            chain_id=self.genesis.chain_id, contracts=self.engine.contracts,
            is_committed=self.store.has_tx,
            lookup_member=committed_member_lookup(self.store.state, lambda: self.store.height),
            sig_cache=SignatureCache())
        self.driver = ConsensusDriver(
            genesis=self.genesis, node_key=seed_key("v0"), store=self.store,
            engine=self.engine, mempool=self.mempool, bus=EventBus(), metrics=Metrics(),
            guard_file=SignerStateFile(tmp_path / "signer-state.bin"),
            vote_signatures=vote_signatures)
        self.sent: list[Any] = []
        self.driver.broadcast = self.sent.append
        self.nonce = 0

    def submit(self) -> None:
        self.nonce += 1
        self.driver.submit_local(add_member_tx(seed_key("admin"), f"m{self.nonce}", self.nonce))

    async def until_height(self, height: int) -> None:
        for _ in range(500):
            if self.store.height >= height:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"height {height} not reached (at {self.store.height})")

    def wal_events(self) -> list[Any]:
        return [WalRecord.from_obj(canonical.decode(raw)).event for raw in self.wal_records()]

    def block(self, height: int, nonce: int) -> tuple[Any, dict[str, Any]]:
        """A certified block at ``height`` (the next one) with one transaction."""
        last = self.store.get_commit(height - 1) if height > 1 else None
        block = self.engine.build_block(
            proposer=self.driver.pubkey, time_ms=1_000 + height,
            txs=[add_member_tx(seed_key("admin"), f"b{nonce}", nonce)], last_commit=last)
        return block, certify(height, block.hash, [seed_key("v0")])

    def wal_records(self) -> list[bytes]:
        """What the WAL file holds now, as a restart would read it."""
        with open(self.driver.wal.path, "rb") as file:
            payloads, _ = decode_records(file.read())
        return payloads


def validator_driver(tmp_path: Any, genesis: Any, name: str) -> ConsensusDriver:
    """A real driver for validator ``name`` of ``genesis`` over its own store in
    ``tmp_path / name`` (its ``store`` attribute; close it after ``stop``), broadcasting
    nowhere until the test links it."""
    store, engine = open_engine(str(tmp_path / name), genesis)
    mempool = Mempool(chain_id=genesis.chain_id, contracts=engine.contracts,
                      is_committed=store.has_tx,
                      lookup_member=committed_member_lookup(store.state, lambda: store.height),
                      sig_cache=SignatureCache())
    driver = ConsensusDriver(genesis=genesis, node_key=seed_key(name), store=store,
                             engine=engine, mempool=mempool, bus=EventBus(), metrics=Metrics(),
                             guard_file=SignerStateFile(tmp_path / f"{name}.guard"))
    driver.broadcast = lambda msg: None
    return driver
