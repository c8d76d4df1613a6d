"""Every test vector in ``docs/protocol.md`` is recomputed here from the real code.

The vectors live inline in the document: a fenced ``json`` block right after a line
``<!-- vector: NAME -->``. For each one the test takes the *inputs* out of the block,
recomputes the whole block with the code and requires equality, so the document and the
code cannot drift apart silently. Some prose algorithms of the document (Merkle audit-path
folding, state-proof verification, the sign-bytes concatenation) are also re-implemented
here independently of the code, so the text an integrator follows is checked too.

Regenerate a vector after a deliberate protocol change::

    python tests/unit/test_protocol_vectors.py NAME   # prints the recomputed block

Notation inside vectors: a JSON object ``{"$bytes": "<hex>"}`` stands for a msgpack
``bin`` value (JSON has no bytes); everything else is plain JSON.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from consensus import canonical
from consensus.types import (
    Commit,
    InvalidMessage,
    Proposal,
    ValidatorSet,
    Vote,
    VoteType,
    verify_commit,
)
from node import block as blocks
from node import merkle, state_tree
from node.block import Header, compute_last_commit_hash, result_leaf
from node.execution import Receipt
from node.p2p import handshake
from node.state import MemoryKV, state_key
from node.tx import Transaction

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
MARKER = re.compile(r"^<!-- vector: ([a-z0-9-]+) -->\n```json\n(.*?)\n```", re.M | re.S)
ANNOTATED = re.compile(r"^<!-- annotated: ([a-z0-9-]+) -->\n```text\n(.*?)\n```", re.M | re.S)
JS_SAFE = 2**53 - 1


# --- helpers --------------------------------------------------------------------------------


def from_typed(value: Any) -> Any:
    """Vector notation -> canonical object (``{"$bytes": hex}`` becomes bytes)."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: from_typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_typed(v) for v in value]
    return value


def to_typed(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, dict):
        return {k: to_typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_typed(v) for v in value]
    return value


def h(data: bytes) -> str:
    return data.hex()


def key_of(seed_hex: str) -> SigningKey:
    return SigningKey(bytes.fromhex(seed_hex))


def by_hand_sign_bytes(tag: str, chain_id: str, body_hex: str) -> bytes:
    """The document's rule, written out: tag || 0x00 || chain_id || 0x00 || canonical(body)."""
    return tag.encode() + b"\x00" + chain_id.encode() + b"\x00" + bytes.fromhex(body_hex)


def load_doc_vectors() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, Any] = {}
    for name, body in MARKER.findall(text):
        assert name not in found, f"vector {name} appears twice in {DOC.name}"
        found[name] = json.loads(body)
    return found


# --- recomputation, one function per kind of vector -----------------------------------------
# Each takes the vector from the document and returns the vector as the code computes it
# from the same inputs. The test requires the two to be equal.


def compute_canonical(v: dict[str, Any]) -> dict[str, Any]:
    value = from_typed(v["value"])
    encoded = canonical.encode(value)
    out = {"value": v["value"], "canonical_hex": h(encoded)}
    if "key_order" in v:
        out["key_order"] = list(canonical.decode(encoded).keys())
    return out


def compute_canonical_cases(v: dict[str, Any]) -> dict[str, Any]:
    return {"cases": [[case, h(canonical.encode(from_typed(case)))] for case, _ in v["cases"]]}


def compute_tx(v: dict[str, Any]) -> dict[str, Any]:
    key = key_of(v["seed"])
    j = v["json"]
    nonce = int(j["nonce"])
    tx = Transaction.create(key, j["chain_id"], j["contract"], j["action"], j["args"], nonce)
    as_json = tx.to_json()
    if nonce > JS_SAFE:
        as_json["nonce"] = str(nonce)  # what a JavaScript client sends for a large nonce
    return {
        "seed": v["seed"],
        "public_key": h(key.verify_key.encode()),
        "json": as_json,
        "body_canonical_hex": h(canonical.encode(tx.body())),
        "sign_bytes_hex": h(tx.signed_bytes),
        "tx_hash": h(tx.hash),
        "signature": h(tx.sig),
        "tx_canonical_hex": h(tx.encoded),
    }


def compute_results(v: dict[str, Any]) -> dict[str, Any]:
    leaves = []
    for item in v["results"]:
        receipt = Receipt.from_obj(from_typed(item["receipt"]))
        leaves.append(result_leaf(bytes.fromhex(item["tx"]), receipt.to_obj()))
    index = v["proof"]["index"]
    tree = merkle.MerkleTree(leaves)
    return {
        "results": v["results"],
        "leaves": [{"leaf_hex": h(leaf), "leaf_hash": h(merkle.leaf_hash(leaf))}
                   for leaf in leaves],
        "results_root": h(merkle.merkle_root(leaves)),
        "proof": {"index": index, "size": len(leaves),
                  "path": [h(p) for p in merkle.inclusion_proof(leaves, index)]},
        "merkle_tree_proof": [h(p) for p in tree.proof(index)],
        "empty_root": h(merkle.EMPTY_ROOT),
    }


def compute_txs_root(v: dict[str, Any]) -> dict[str, Any]:
    """By the document's words, not node.block: leaves are hash (v1) or hash ‖ sig (v2)."""
    pairs = [(bytes.fromhex(t["tx_hash"]), bytes.fromhex(t["signature"])) for t in v["txs"]]
    return {
        "txs": v["txs"],
        "txs_root_v1": h(merkle.merkle_root([tx_hash for tx_hash, _ in pairs])),
        "leaves_v2_hex": [h(tx_hash + sig) for tx_hash, sig in pairs],
        "txs_root_v2": h(merkle.merkle_root([tx_hash + sig for tx_hash, sig in pairs])),
    }


def compute_header(v: dict[str, Any]) -> dict[str, Any]:
    obj = {k: bytes.fromhex(x) if isinstance(x, str) and k != "chain_id" else x
           for k, x in v["header"].items()}
    header = Header.from_obj(obj)
    as_json = header.to_json()
    del as_json["hash"]
    return {"header": as_json, "header_canonical_hex": h(canonical.encode(header.to_obj())),
            "block_hash": h(header.hash)}


def compute_commit(v: dict[str, Any]) -> dict[str, Any]:
    keys = [key_of(s) for s in v["validator_seeds"]]
    vset = ValidatorSet(tuple(k.verify_key.encode() for k in keys))
    block_hash = bytes.fromhex(v["block_hash"])
    pairs = []
    for index in v["signer_indices"]:
        vote = Vote(VoteType.PRECOMMIT, v["height"], v["round"], block_hash,
                    vset.validators[index])
        pairs.append((vset.validators[index],
                      canonical.sign(keys[index], "jangbu/vote/v1", v["chain_id"],
                                     vote.sign_body())))
    commit = Commit(v["height"], v["round"], block_hash, tuple(pairs))
    first = commit.precommit(*pairs[0])
    return {
        "chain_id": v["chain_id"],
        "validator_seeds": v["validator_seeds"],
        "validators": [h(k) for k in vset.validators],
        "validators_hash": h(vset.hash()),
        "quorum": vset.quorum,
        "height": v["height"],
        "round": v["round"],
        "block_hash": v["block_hash"],
        "signer_indices": v["signer_indices"],
        "first_precommit_sign_body_hex": h(canonical.encode(first.sign_body())),
        "first_precommit_sign_bytes_hex": h(first.sign_bytes(v["chain_id"])),
        "certificate": to_hex_json(commit.to_obj()),
        "certificate_canonical_hex": h(canonical.encode(commit.to_obj())),
        "last_commit_hash": h(compute_last_commit_hash(commit.to_obj())),
    }


def to_hex_json(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, dict):
        return {k: to_hex_json(x) for k, x in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_hex_json(x) for x in obj]
    return obj


def compute_vote(v: dict[str, Any]) -> dict[str, Any]:
    key = key_of(v["seed"])
    block_hash = None if v["block_hash"] is None else bytes.fromhex(v["block_hash"])
    vote = Vote(VoteType(v["type"]), v["height"], v["round"], block_hash,
                key.verify_key.encode())
    sig = bytes(key.sign(vote.sign_bytes(v["chain_id"])).signature)
    return {"seed": v["seed"], "chain_id": v["chain_id"], "type": v["type"],
            "height": v["height"], "round": v["round"], "block_hash": v["block_hash"],
            "validator": h(key.verify_key.encode()),
            "sign_body_hex": h(canonical.encode(vote.sign_body())),
            "sign_bytes_hex": h(vote.sign_bytes(v["chain_id"])), "signature": h(sig)}


def compute_proposal(v: dict[str, Any]) -> dict[str, Any]:
    key = key_of(v["seed"])
    block = bytes.fromhex(v["block_hex"])
    proposal = Proposal(v["height"], v["round"], v["pol_round"], bytes.fromhex(v["block_hash"]),
                        block, key.verify_key.encode())
    sig = bytes(key.sign(proposal.sign_bytes(v["chain_id"])).signature)
    return {"seed": v["seed"], "chain_id": v["chain_id"], "height": v["height"],
            "round": v["round"], "pol_round": v["pol_round"], "block_hash": v["block_hash"],
            "block_hex": v["block_hex"], "block_digest": h(hashlib.sha256(block).digest()),
            "proposer": h(key.verify_key.encode()),
            "sign_body_hex": h(canonical.encode(proposal.sign_body())),
            "sign_bytes_hex": h(proposal.sign_bytes(v["chain_id"])), "signature": h(sig)}


def build_state(entries: list[list[Any]]) -> tuple[state_tree.StateTree, MemoryKV, dict]:
    writes = {state_key(c, k): canonical.encode(from_typed(value)) for c, k, value in entries}
    tree = state_tree.StateTree()
    leaves = MemoryKV()
    delta = tree.preview(writes, leaves)
    tree.apply(delta)
    leaves.apply(dict(delta.leaf_writes))
    return tree, leaves, writes


def state_response(tree: state_tree.StateTree, leaves: MemoryKV, writes: dict,
                   contract: str, key: str) -> dict[str, Any]:
    """The fields of ``GET /v1/state/{contract}/{key}`` that a client verifies."""
    full = state_key(contract, key)
    raw = writes.get(full)
    return {"contract": contract, "key": key, "state_root": h(tree.root),
            "value_bytes": None if raw is None else h(raw),
            "proof": tree.prove(full, leaves).to_json()}


def compute_state(v: dict[str, Any]) -> dict[str, Any]:
    tree, leaves, writes = build_state(v["state"])
    table = []
    for contract, key, _ in v["state"]:
        full = state_key(contract, key)
        khash = state_tree.key_hash(full)
        table.append({"full_key": full.decode(), "value_bytes": h(writes[full]),
                      "key_hash": h(khash), "value_hash": h(state_tree.value_hash(writes[full])),
                      "bucket": state_tree.bucket_of(khash)})
    return {
        "state": v["state"],
        "entries": table,
        "state_root": h(tree.root),
        "empty_state_root": h(state_tree.EMPTY_ROOT),
        "present": state_response(tree, leaves, writes, *v["present"]["at"]) | {
            "at": v["present"]["at"]},
        "absent": state_response(tree, leaves, writes, *v["absent"]["at"]) | {
            "at": v["absent"]["at"]},
    }


def compute_read(v: dict[str, Any]) -> dict[str, Any]:
    key = key_of(v["seed"])
    body = {"method": v["method"], "path": v["path"], "time_ms": v["time_ms"]}
    sig = canonical.sign(key, "jangbu/read/v1", v["chain_id"], body)
    return {
        "seed": v["seed"], "chain_id": v["chain_id"], "method": v["method"], "path": v["path"],
        "time_ms": v["time_ms"],
        "body_canonical_hex": h(canonical.encode(body)),
        "sign_bytes_hex": h(canonical.sign_bytes("jangbu/read/v1", v["chain_id"], body)),
        "headers": {"X-Jangbu-Key": h(key.verify_key.encode()),
                    "X-Jangbu-Time": str(v["time_ms"]),
                    "X-Jangbu-Signature": h(sig)},
    }


def compute_device(v: dict[str, Any]) -> dict[str, Any]:
    key = key_of(v["seed"])
    body = {k: x for k, x in v["signed_reading"].items() if k != "sig"}
    sig = canonical.sign(key, "jangbu/device/v1", v["chain_id"], body)
    return {
        "seed": v["seed"], "chain_id": v["chain_id"],
        "public_key": h(key.verify_key.encode()),
        "body_canonical_hex": h(canonical.encode(body)),
        "sign_bytes_hex": h(canonical.sign_bytes("jangbu/device/v1", v["chain_id"], body)),
        "signed_reading": {**body, "sig": h(sig)},
    }


def compute_handshake(v: dict[str, Any]) -> dict[str, Any]:
    node_keys = [key_of(v["node_seed_a"]), key_of(v["node_seed_b"])]
    ephs = [PrivateKey(bytes.fromhex(v["eph_secret_a"])),
            PrivateKey(bytes.fromhex(v["eph_secret_b"]))]
    pubs = [bytes(e.public_key) for e in ephs]
    keys_a = handshake.compute_session_keys(ephs[0], pubs[1])
    keys_b = handshake.compute_session_keys(ephs[1], pubs[0])
    transcript = handshake.get_transcript(keys_a)
    auth_a = handshake.make_auth(node_keys[0], v["chain_id"], keys_a)
    auth_b = handshake.make_auth(node_keys[1], v["chain_id"], keys_b)
    key_lo = keys_a.send_key if pubs[0] == keys_a.eph_lo else keys_a.recv_key
    key_hi = keys_a.recv_key if pubs[0] == keys_a.eph_lo else keys_a.send_key
    return {
        "chain_id": v["chain_id"],
        "node_seed_a": v["node_seed_a"], "node_seed_b": v["node_seed_b"],
        "eph_secret_a": v["eph_secret_a"], "eph_secret_b": v["eph_secret_b"],
        "hello_a": h(handshake.make_hello(pubs[0])), "hello_b": h(handshake.make_hello(pubs[1])),
        "eph_lo": h(keys_a.eph_lo), "eph_hi": h(keys_a.eph_hi),
        "key_lo": h(key_lo), "key_hi": h(key_hi),
        "transcript_canonical_hex": h(canonical.encode(transcript)),
        "sign_bytes_hex": h(canonical.sign_bytes(handshake.HANDSHAKE_TAG, v["chain_id"],
                                                 transcript)),
        "auth_a_canonical_hex": h(canonical.encode(auth_a)),
        "sig_a": h(auth_a["sig"]), "sig_b": h(auth_b["sig"]),
    }


def lookup(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def compute_constants(v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in v:
        value = lookup(name)
        out[name] = value.pattern if isinstance(value, re.Pattern) else value
    return out


def compute_tags(v: dict[str, Any]) -> dict[str, Any]:
    # tag -> the constants naming it; each constant must hold exactly that tag.
    return {tag: [name for name in names if lookup(name) == tag] for tag, names in v.items()}


COMPUTE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "canonical-map": compute_canonical,
    "canonical-key-order": compute_canonical,
    "canonical-cases": compute_canonical_cases,
    "tags": compute_tags,
    "tx-1": compute_tx,
    "tx-2": compute_tx,
    "tx-3": compute_tx,
    "limits": compute_constants,
    "results-1": compute_results,
    "txs-root-1": compute_txs_root,
    "header-1": compute_header,
    "commit-1": compute_commit,
    "vote-1": compute_vote,
    "proposal-1": compute_proposal,
    "state-1": compute_state,
    "read-1": compute_read,
    "device-1": compute_device,
    "handshake-1": compute_handshake,
}


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return load_doc_vectors()


def test_the_document_has_every_vector(vectors):
    assert sorted(vectors) == sorted(COMPUTE)


@pytest.mark.parametrize("name", sorted(COMPUTE))
def test_vector_matches_the_code(vectors, name):
    assert name in vectors, f"vector {name} is missing from {DOC.name}"
    assert COMPUTE[name](vectors[name]) == vectors[name]


def test_annotated_hex_is_the_vector(vectors):
    text = DOC.read_text(encoding="utf-8")
    annotated = dict(ANNOTATED.findall(text))
    assert set(annotated) == {"canonical-map"}
    hex_bytes = "".join(line.split("#")[0].replace(" ", "") for line in
                        annotated["canonical-map"].splitlines())
    assert hex_bytes == vectors["canonical-map"]["canonical_hex"]


def test_canonical_vectors_decode_back(vectors):
    for name in ("canonical-map", "canonical-key-order"):
        data = bytes.fromhex(vectors[name]["canonical_hex"])
        assert canonical.decode(data) == from_typed(vectors[name]["value"])
    for case, hex_ in vectors["canonical-cases"]["cases"]:
        assert canonical.decode(bytes.fromhex(hex_)) == from_typed(case)


def test_key_order_is_utf8_byte_order_not_utf16(vectors):
    order = vectors["canonical-key-order"]["key_order"]
    assert order == sorted(order, key=lambda k: k.encode("utf-8"))
    utf16 = sorted(order, key=lambda k: k.encode("utf-16-be"))
    assert utf16 != order  # the vector shows the JavaScript pitfall


@pytest.mark.parametrize("name", ["tx-1", "tx-2", "tx-3"])
def test_transaction_vectors_verify(vectors, name):
    v = vectors[name]
    tx = Transaction.from_json(v["json"])
    tx.check(v["json"]["chain_id"])
    assert h(tx.hash) == v["tx_hash"]
    assert Transaction.decode(bytes.fromhex(v["tx_canonical_hex"])) == tx
    signed = by_hand_sign_bytes("jangbu/tx/v1", v["json"]["chain_id"], v["body_canonical_hex"])
    assert h(signed) == v["sign_bytes_hex"]
    assert hashlib.sha256(signed).hexdigest() == v["tx_hash"]
    VerifyKey(bytes.fromhex(v["public_key"])).verify(signed, bytes.fromhex(v["signature"]))


def test_txs_root_vector_is_the_transactions_of_section_3(vectors):
    v = vectors["txs-root-1"]
    txs = [Transaction.from_json(vectors[f"tx-{i}"]["json"]) for i in (1, 2, 3)]
    assert v["txs"] == [{"tx_hash": h(tx.hash), "signature": h(tx.sig)} for tx in txs]
    assert v["txs_root_v2"] == h(blocks.compute_txs_root(txs, blocks.BLOCK_VERSION_SIGNED))
    assert v["txs_root_v1"] == h(blocks.compute_txs_root(txs, blocks.BLOCK_VERSION_HASHES))


def test_large_nonce_travels_as_a_decimal_string(vectors):
    assert vectors["tx-2"]["json"]["nonce"] == str(2**64 - 1)


def independent_root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, as the document describes it (not the code's recursion)."""
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def test_results_vector_verifies_and_matches_the_transactions(vectors):
    v = vectors["results-1"]
    assert [item["tx"] for item in v["results"]] == [
        vectors[f"tx-{i}"]["tx_hash"] for i in (1, 2, 3)]
    leaves = [bytes.fromhex(leaf["leaf_hex"]) for leaf in v["leaves"]]
    for leaf, item in zip(leaves, v["results"], strict=True):
        # the leaf is canonical {"receipt": ..., "tx": ...}: re-encode it by hand
        assert leaf == canonical.encode({"tx": bytes.fromhex(item["tx"]),
                                         "receipt": from_typed(item["receipt"])})
    p = v["proof"]
    path = [bytes.fromhex(x) for x in p["path"]]
    root = bytes.fromhex(v["results_root"])
    assert independent_root_from_path(leaves[p["index"]], p["index"], p["size"], path) == root
    assert merkle.verify_inclusion(leaves[p["index"]], p["index"], p["size"], path, root)
    assert v["empty_root"] == hashlib.sha256(b"").hexdigest()
    # 3 leaves split 2 + 1: root = node(node(l0, l1), l2)
    l0, l1, l2 = (bytes.fromhex(x["leaf_hash"]) for x in v["leaves"])
    assert merkle.node_hash(merkle.node_hash(l0, l1), l2) == root


def test_header_vector_ties_the_other_vectors_together(vectors):
    header = vectors["header-1"]["header"]
    txs = [Transaction.from_json(vectors[f"tx-{i}"]["json"]) for i in (1, 2, 3)]
    # header-1 is of a chain with block version 1 (txs-root-1 shows both versions)
    assert header["txs_root"] == vectors["txs-root-1"]["txs_root_v1"]
    assert header["txs_root"] == h(blocks.compute_txs_root(txs, blocks.BLOCK_VERSION_HASHES))
    assert header["results_root"] == vectors["results-1"]["results_root"]
    assert header["state_root"] == vectors["state-1"]["state_root"]
    assert header["validators_hash"] == vectors["commit-1"]["validators_hash"]
    assert header["chain_id"] == vectors["commit-1"]["chain_id"]
    assert header["last_commit_hash"] == h(compute_last_commit_hash(None))
    validators = [bytes.fromhex(x) for x in vectors["commit-1"]["validators"]]
    vset = ValidatorSet(tuple(validators))
    assert header["proposer"] == h(vset.proposer(header["height"], 0))
    assert vectors["commit-1"]["block_hash"] == vectors["header-1"]["block_hash"]
    assert vectors["proposal-1"]["block_hash"] == vectors["header-1"]["block_hash"]
    assert vectors["proposal-1"]["proposer"] == header["proposer"]
    assert hashlib.sha256(bytes.fromhex(vectors["header-1"]["header_canonical_hex"])
                          ).hexdigest() == vectors["header-1"]["block_hash"]


def test_certificate_verifies_alone(vectors):
    v = vectors["commit-1"]
    vset = ValidatorSet(tuple(bytes.fromhex(x) for x in v["validators"]))
    assert hashlib.sha256(canonical.encode({"validators": list(vset.validators)})
                          ).hexdigest() == v["validators_hash"]
    commit = Commit.from_obj(from_typed_hex_commit(v["certificate"]))
    verify_commit(v["chain_id"], vset, commit)
    # each signature checks with plain Ed25519 over the precommit sign bytes
    for validator_hex, sig_hex in v["certificate"]["signatures"]:
        body = {"block_hash": bytes.fromhex(v["block_hash"]), "height": v["height"],
                "round": v["round"], "type": 2, "validator": bytes.fromhex(validator_hex)}
        msg = canonical.sign_bytes("jangbu/vote/v1", v["chain_id"], body)
        VerifyKey(bytes.fromhex(validator_hex)).verify(msg, bytes.fromhex(sig_hex))
    assert len(v["certificate"]["signatures"]) >= v["quorum"]


def from_typed_hex_commit(cert: dict[str, Any]) -> dict[str, Any]:
    return {"height": cert["height"], "round": cert["round"],
            "block_hash": bytes.fromhex(cert["block_hash"]),
            "signatures": [[bytes.fromhex(a), bytes.fromhex(b)] for a, b in cert["signatures"]]}


def test_vote_and_proposal_vectors_verify(vectors):
    v = vectors["vote-1"]
    vote = Vote(VoteType(v["type"]), v["height"], v["round"], None,
                bytes.fromhex(v["validator"]), bytes.fromhex(v["signature"]))
    vote.verify(v["chain_id"])
    p = vectors["proposal-1"]
    proposal = Proposal(p["height"], p["round"], p["pol_round"], bytes.fromhex(p["block_hash"]),
                        bytes.fromhex(p["block_hex"]), bytes.fromhex(p["proposer"]),
                        bytes.fromhex(p["signature"]))
    proposal.verify(p["chain_id"])
    # The block bytes are signed (through their digest): other bytes under the same
    # signature do not verify.
    with pytest.raises(InvalidMessage):
        replace(proposal, block=proposal.block + b"!").verify(p["chain_id"])


def independent_state_verify(root_hex: str, contract: str, key: str, value_bytes_hex: str | None,
                             proof: dict[str, Any]) -> bool:
    """The client-side algorithm of the document, written without node.state_tree."""
    full = contract.encode() + b"/" + key.encode()
    khash = hashlib.sha256(full).digest()
    bucket = int.from_bytes(khash[:2], "big")
    if proof["bucket"] != bucket or len(proof["path"]) != 16:
        return False
    entries = sorted((bytes.fromhex(k), bytes.fromhex(x)) for k, x in proof["entries"])
    if len({k for k, _ in entries}) != len(entries):
        return False
    if any(int.from_bytes(k[:2], "big") != bucket for k, _ in entries):
        return False
    if any(len(k) != 32 or len(x) != 32 for k, x in entries):
        return False
    if any(len(bytes.fromhex(sibling)) != 32 for sibling in proof["path"]):
        return False
    found = dict(entries).get(khash)
    if value_bytes_hex is None:
        if found is not None:
            return False
    elif found != hashlib.sha256(bytes.fromhex(value_bytes_hex)).digest():
        return False
    node = hashlib.sha256(b"\x00" + b"".join(k + x for k, x in entries)).digest()
    index = bucket
    for sibling_hex in proof["path"]:
        sibling = bytes.fromhex(sibling_hex)
        pair = sibling + node if index & 1 else node + sibling
        node = hashlib.sha256(b"\x01" + pair).digest()
        index >>= 1
    return node.hex() == root_hex


def test_state_proofs_verify(vectors):
    v = vectors["state-1"]
    present, absent = v["present"], v["absent"]
    assert present["value_bytes"] is not None and absent["value_bytes"] is None
    assert len(present["proof"]["entries"]) >= 2  # the vector shows a shared bucket
    for resp in (present, absent):
        assert independent_state_verify(v["state_root"], resp["contract"], resp["key"],
                                        resp["value_bytes"], resp["proof"])
        proof = state_tree.StateProof(
            resp["proof"]["bucket"],
            tuple((bytes.fromhex(k), bytes.fromhex(x)) for k, x in resp["proof"]["entries"]),
            tuple(bytes.fromhex(p) for p in resp["proof"]["path"]))
        value = None if resp["value_bytes"] is None else bytes.fromhex(resp["value_bytes"])
        full = state_key(resp["contract"], resp["key"])
        assert state_tree.verify_state_proof(bytes.fromhex(v["state_root"]), full, value, proof)
    # a wrong value, or claiming the absent key is present, fails
    assert not independent_state_verify(v["state_root"], present["contract"], present["key"],
                                        "c0", present["proof"])
    assert not independent_state_verify(v["state_root"], present["contract"], present["key"],
                                        None, present["proof"])


def test_signed_read_is_accepted_by_the_api(vectors, monkeypatch):
    from aiohttp.test_utils import make_mocked_request

    from contracts.sdk import Member
    from node import api

    v = vectors["read-1"]
    pubkey = bytes.fromhex(v["headers"]["X-Jangbu-Key"])
    member = Member(pubkey, "org-a", ("farm",), "member")
    monkeypatch.setattr(api, "member_lookup", lambda _state: lambda key: {pubkey: member}.get(key))
    monkeypatch.setattr(api.time, "time", lambda: v["time_ms"] / 1000 + 30)

    class Cfg:
        read_auth_window_s = 60

    class Store:
        state = None

    class FakeNode:
        config = Cfg()
        chain_id = v["chain_id"]
        store = Store()

    handler = api.Api(FakeNode())  # type: ignore[arg-type]
    request = make_mocked_request(v["method"], v["path"], headers=v["headers"])
    assert request.path_qs == v["path"]
    assert handler._caller(request) == member
    forged = {**v["headers"], "X-Jangbu-Time": str(v["time_ms"] + 1)}
    with pytest.raises(api.ApiError) as err:
        handler._caller(make_mocked_request(v["method"], v["path"], headers=forged))
    assert err.value.code == "E_AUTH"
    monkeypatch.setattr(api.time, "time", lambda: v["time_ms"] / 1000 + 61)
    with pytest.raises(api.ApiError) as err:
        handler._caller(request)
    assert err.value.code == "E_AUTH_EXPIRED"


def test_device_reading_matches_the_contract(vectors):
    from contracts.livestock import contract as livestock
    from node.execution import TAG_DEVICE, make_signature_checker

    v = vectors["device-1"]
    assert livestock.TAG_DEVICE == TAG_DEVICE == "jangbu/device/v1"
    parsed = livestock.parse_reading(v["signed_reading"])
    check = make_signature_checker(v["chain_id"])
    assert check(bytes.fromhex(v["public_key"]), TAG_DEVICE, parsed["body"],
                 bytes.fromhex(v["signed_reading"]["sig"]))
    assert not check(bytes.fromhex(v["public_key"]), TAG_DEVICE, parsed["body"] | {"seq": 8},
                     bytes.fromhex(v["signed_reading"]["sig"]))
    # the reading travels inside tx-2
    assert vectors["tx-2"]["json"]["args"] == {"readings": [v["signed_reading"]]}


def test_handshake_signatures_verify(vectors):
    v = vectors["handshake-1"]
    msg = bytes.fromhex(v["sign_bytes_hex"])
    for seed, sig in ((v["node_seed_a"], v["sig_a"]), (v["node_seed_b"], v["sig_b"])):
        key_of(seed).verify_key.verify(msg, bytes.fromhex(sig))
    lo, hi = bytes.fromhex(v["eph_lo"]), bytes.fromhex(v["eph_hi"])
    assert lo < hi
    hello_pubs = {bytes.fromhex(v["hello_a"])[6:], bytes.fromhex(v["hello_b"])[6:]}
    assert hello_pubs == {lo, hi}


# --- regeneration ---------------------------------------------------------------------------

if __name__ == "__main__":
    current = load_doc_vectors()
    for wanted in sys.argv[1:] or sorted(COMPUTE):
        print(f"<!-- vector: {wanted} -->\n```json")
        print(json.dumps(COMPUTE[wanted](current[wanted]), indent=2, ensure_ascii=False))
        print("```\n")
