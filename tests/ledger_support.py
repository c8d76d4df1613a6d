"""Helpers shared by ledger tests: a one-validator chain driven without the network.

Real parts only: real LevelDB store, real engine and contracts, real Ed25519 certificates
built from signed precommits exactly as consensus produces them.
"""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from consensus import canonical
from consensus.types import Commit, Height, Round, ValidatorSet, Vote, VoteType
from node.block import BLOCK_VERSION_SIGNED
from node.engine import Engine, certificate_verifier
from node.genesis import Genesis, parse_genesis
from node.registry import load_contracts
from node.state_tree import StateDelta
from node.store import LedgerStore, put_state_writes
from node.tx import Transaction

CHAIN_ID = "ledger-test"
T0 = 1_767_225_600_000


def seed_key(name: str) -> SigningKey:
    return SigningKey(canonical.digest(name.encode()))


def make_genesis(validator_names: list[str] | None = None, *,
                 block_version: int = BLOCK_VERSION_SIGNED,
                 consensus: dict[str, int] | None = None) -> Genesis:
    """A one-organisation chain; ``block_version`` as new networks get it unless given,
    and any other ``consensus`` parameters given."""
    names = validator_names or ["v0"]
    admin = seed_key("admin")
    return parse_genesis({
        "chain_id": CHAIN_ID,
        "genesis_time_ms": T0,
        "validators": [
            {"name": n, "org": "operator", "pubkey": seed_key(n).verify_key.encode().hex(),
             "p2p": f"127.0.0.1:{27000 + i}", "api": f"http://127.0.0.1:{28000 + i}"}
            for i, n in enumerate(names)
        ],
        "orgs": [{"id": "operator", "name": "Operator", "roles": ["operator"],
                  "keys": [{"pubkey": admin.verify_key.encode().hex(),
                            "roles": ["operator", "admin"]}]}],
        "contracts": [{"name": "membership", "version": "1"}],
        "consensus": {"block_version": block_version, **(consensus or {})},
    })


def open_engine(path: str, genesis: Genesis) -> tuple[LedgerStore, Engine]:
    store = LedgerStore.open(path, chain_id=genesis.chain_id, genesis_hash=genesis.hash)
    if not store.initialised:
        tree = store.initialise(chain_id=genesis.chain_id, genesis_hash=genesis.hash,
                                state=genesis.initial_state())
    else:
        tree = store.load_state_tree()
    vset = ValidatorSet(tuple(genesis.validator_pubkeys()))
    engine = Engine(chain_id=genesis.chain_id, contracts=load_contracts(genesis.contracts),
                    store=store, tree=tree, validators_hash=vset.hash(),
                    validators=vset.validators, max_block_txs=genesis.params.max_block_txs,
                    max_block_bytes=genesis.params.max_block_bytes,
                    block_version=genesis.params.block_version,
                    verify_commit=certificate_verifier(genesis.chain_id, vset))
    return store, engine


def certify(height: int, block_hash: bytes, keys: list[SigningKey]) -> dict[str, Any]:
    """A commit certificate signed by ``keys`` (precommits in round 0)."""
    sigs = []
    for key in keys:
        vote = Vote(VoteType.PRECOMMIT, Height(height), Round(0), block_hash,
                    key.verify_key.encode())
        sigs.append((vote.validator, bytes(key.sign(vote.sign_bytes(CHAIN_ID)).signature)))
    return Commit(Height(height), Round(0), block_hash, tuple(sorted(sigs))).to_obj()


def add_member_tx(admin: SigningKey, name: str, nonce: int) -> Transaction:
    return Transaction.create(admin, CHAIN_ID, "membership", "add_member",
                              {"pubkey": seed_key(name).verify_key.encode().hex(),
                               "label": name}, nonce)


def write_state_and_leaves(store: LedgerStore, writes: dict[bytes, bytes | None],
                           delta: StateDelta) -> None:
    """The state part of a block's commit: the values and their leaf index entries in one
    batch, as ``LedgerStore.commit_block`` writes them, for tests that drive a state tree
    over a real store without blocks."""
    with store.db.write_batch() as batch:
        put_state_writes(batch, writes, delta.leaf_writes)
