"""The genesis file: the one document every organisation agrees on before the chain starts.

JSON with: ``chain_id``, ``genesis_time_ms``, ``validators`` (name, organisation, node
public key, p2p and API address), ``orgs`` (roles, business ids, member and device keys),
``contracts`` (name and version of each enabled contract) and ``consensus`` parameters.
Loading validates everything and names the exact field that is wrong
(``validators[2].pubkey: ...``) so an operator can fix the file without reading code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus import canonical
from consensus.core import ConsensusParams as CoreParams
from contracts import membership
from node.block import BLOCK_VERSION_HASHES, BLOCK_VERSIONS, MAX_BLOCK_BYTES
from node.state import state_key

HEX64 = re.compile(r"[0-9a-f]{64}")
ADDRESS = re.compile(r"[A-Za-z0-9.\-]+:\d{1,5}")
CHAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class GenesisError(ValueError):
    """The genesis file is invalid; the message starts with the offending field's path."""


_CORE = CoreParams()


@dataclass(frozen=True)
class ConsensusParams:
    """Genesis' consensus section; timeout defaults are the consensus core's own."""

    timeout_propose_ms: int = _CORE.timeout_propose_ms
    timeout_propose_delta_ms: int = _CORE.timeout_propose_delta_ms
    timeout_prevote_ms: int = _CORE.timeout_prevote_ms
    timeout_prevote_delta_ms: int = _CORE.timeout_prevote_delta_ms
    timeout_precommit_ms: int = _CORE.timeout_precommit_ms
    timeout_precommit_delta_ms: int = _CORE.timeout_precommit_delta_ms
    max_block_txs: int = 1000  # bounds the time one block takes to execute (~0.2 s)
    max_block_bytes: int = 3 * 1024 * 1024  # a proposal must fit a 4 MiB canonical message
    empty_block_interval_ms: int = 0  # 0: never make empty blocks while idle
    # A height with work starts no sooner than this after the previous one started, unless
    # a full block is already waiting (node/driver.py, "block pacing"); 0: at once.
    min_block_interval_ms: int = 0
    # What txs_root covers (node/block.py): 1 = transaction hashes, 2 = hash + signature.
    # Absent means 1, the rule of every chain made before version 2 existed; new networks
    # are written with 2 (cli/network.py).
    block_version: int = BLOCK_VERSION_HASHES

    def to_obj(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ValidatorInfo:
    name: str
    org: str
    pubkey: bytes
    p2p: str
    api: str


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    validators: tuple[ValidatorInfo, ...]
    orgs: tuple[Mapping[str, Any], ...]
    contracts: tuple[tuple[str, str], ...]
    params: ConsensusParams
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def hash(self) -> bytes:
        return canonical.hash_obj(self.raw)

    def validator_pubkeys(self) -> list[bytes]:
        return [v.pubkey for v in self.validators]

    def validator_by_pubkey(self, pubkey: bytes) -> ValidatorInfo | None:
        for info in self.validators:
            if info.pubkey == pubkey:
                return info
        return None

    def initial_state(self) -> dict[bytes, bytes]:
        """The state entries genesis seeds (membership only, for now)."""
        entries = membership.seed_records(self.orgs)
        return {
            state_key(membership.NAME, key): canonical.encode(value)
            for key, value in entries.items()
        }


def _require(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise GenesisError(f"{path}: {message}")


def _str(obj: Mapping[str, Any], name: str, path: str,
         pattern: re.Pattern[str] | None = None) -> str:
    value = obj.get(name)
    _require(isinstance(value, str) and bool(value), f"{path}.{name}".lstrip("."),
             "must be a non-empty string")
    if pattern is not None:
        _require(bool(pattern.fullmatch(str(value))), f"{path}.{name}".lstrip("."),
                 f"{value!r} does not match {pattern.pattern}")
    return str(value)


def parse_genesis(obj: Any) -> Genesis:
    """Validate a decoded genesis document; raises GenesisError naming the field."""
    _require(isinstance(obj, Mapping), "genesis", "must be a JSON object")
    chain_id = _str(obj, "chain_id", "", CHAIN_ID)
    time_ms = obj.get("genesis_time_ms")
    _require(isinstance(time_ms, int) and not isinstance(time_ms, bool) and time_ms >= 0,
             "genesis_time_ms", "must be a non-negative integer (ms since the Unix epoch)")

    orgs_raw = obj.get("orgs")
    _require(isinstance(orgs_raw, list) and bool(orgs_raw), "orgs", "must be a non-empty list")
    org_ids: set[str] = set()
    all_keys: set[str] = set()
    orgs: list[Mapping[str, Any]] = []
    for i, org in enumerate(orgs_raw):
        path = f"orgs[{i}]"
        _require(isinstance(org, Mapping), path, "must be an object")
        org_id = _str(org, "id", path, membership.ORG_ID)
        _require(org_id not in org_ids, f"{path}.id", f"duplicate organisation {org_id!r}")
        org_ids.add(org_id)
        roles = org.get("roles")
        _require(isinstance(roles, list) and bool(roles), f"{path}.roles",
                 "must be a non-empty list of role names")
        for j, role in enumerate(roles):
            _require(isinstance(role, str) and bool(membership.ROLE.fullmatch(role)),
                     f"{path}.roles[{j}]", f"invalid role name {role!r}")
        business_ids = org.get("business_ids", [])
        _require(isinstance(business_ids, list) and all(isinstance(b, str) for b in business_ids),
                 f"{path}.business_ids", "must be a list of strings")
        keys = org.get("keys", [])
        _require(isinstance(keys, list), f"{path}.keys", "must be a list")
        for j, key in enumerate(keys):
            kpath = f"{path}.keys[{j}]"
            _require(isinstance(key, Mapping), kpath, "must be an object")
            pub = _str(key, "pubkey", kpath, HEX64)
            _require(pub not in all_keys, f"{kpath}.pubkey", "key listed twice")
            all_keys.add(pub)
            kind = key.get("kind", "member")
            _require(kind in membership.KINDS, f"{kpath}.kind",
                     f"must be one of {', '.join(membership.KINDS)}")
            key_roles = key.get("roles", roles)
            _require(isinstance(key_roles, list)
                     and all(isinstance(role, str) for role in key_roles),
                     f"{kpath}.roles", "must be a list of role names")
            extra = set(key_roles) - set(roles) - {membership.ADMIN, membership.DEVICE}
            _require(not extra, f"{kpath}.roles", f"roles {sorted(extra)} not held by {org_id}")
        orgs.append(org)

    validators_raw = obj.get("validators")
    _require(isinstance(validators_raw, list) and bool(validators_raw), "validators",
             "must be a non-empty list")
    validators: list[ValidatorInfo] = []
    seen_pub: set[bytes] = set()
    seen_names: set[str] = set()
    for i, val in enumerate(validators_raw):
        path = f"validators[{i}]"
        _require(isinstance(val, Mapping), path, "must be an object")
        name = _str(val, "name", path)
        _require(name not in seen_names, f"{path}.name", f"duplicate validator name {name!r}")
        seen_names.add(name)
        org = _str(val, "org", path)
        _require(org in org_ids, f"{path}.org", f"unknown organisation {org!r}")
        node_pubkey = bytes.fromhex(_str(val, "pubkey", path, HEX64))
        _require(node_pubkey not in seen_pub, f"{path}.pubkey", "validator key listed twice")
        seen_pub.add(node_pubkey)
        p2p = _str(val, "p2p", path, ADDRESS)
        api = _str(val, "api", path)
        _require(api.startswith(("http://", "https://")), f"{path}.api",
                 "must be an http:// or https:// URL")
        validators.append(ValidatorInfo(name, org, node_pubkey, p2p, api))

    contracts_raw = obj.get("contracts")
    _require(isinstance(contracts_raw, list) and bool(contracts_raw), "contracts",
             "must be a non-empty list of {name, version}")
    contracts: list[tuple[str, str]] = []
    for i, item in enumerate(contracts_raw):
        path = f"contracts[{i}]"
        _require(isinstance(item, Mapping), path, "must be an object")
        contracts.append((_str(item, "name", path), _str(item, "version", path)))
    _require(("membership" in {name for name, _ in contracts}), "contracts",
             "must include the membership system contract")

    params_raw = obj.get("consensus", {})
    _require(isinstance(params_raw, Mapping), "consensus", "must be an object")
    defaults = ConsensusParams().to_obj()
    for name, value in params_raw.items():
        _require(name in defaults, f"consensus.{name}", "unknown parameter")
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                 f"consensus.{name}", "must be a non-negative integer")
    params = ConsensusParams(**{**defaults, **params_raw})
    _require(params.max_block_txs >= 1, "consensus.max_block_txs", "must be at least 1")
    _require(1 <= params.max_block_bytes <= MAX_BLOCK_BYTES, "consensus.max_block_bytes",
             f"must be between 1 and {MAX_BLOCK_BYTES} (a block must fit one message)")
    # A validator that starts a height at once (a full block in its mempool) waits
    # timeout_propose_ms for the proposal of a proposer still pacing: the pace must leave
    # room for the proposal to be built and to travel within that wait.
    _require(params.min_block_interval_ms <= params.timeout_propose_ms // 2,
             "consensus.min_block_interval_ms",
             f"must be at most half of timeout_propose_ms ({params.timeout_propose_ms // 2})")
    _require(params.block_version in BLOCK_VERSIONS, "consensus.block_version",
             f"must be one of {', '.join(map(str, BLOCK_VERSIONS))}")

    try:
        canonical.encode(obj)
    except canonical.CanonicalError as exc:
        raise GenesisError(f"genesis: {exc}") from None
    return Genesis(chain_id, int(time_ms), tuple(validators), tuple(orgs), tuple(contracts),
                   params, raw=dict(obj))


def load_genesis(path: str | Path) -> Genesis:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GenesisError(f"genesis file {path} does not exist") from None
    except UnicodeDecodeError:  # (the error once named no file)
        raise GenesisError(f"genesis file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise GenesisError(f"genesis file {path} cannot be read: {exc.strerror or exc}") \
            from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise GenesisError(f"genesis file {path} is nested too deeply") from None
    try:
        return parse_genesis(obj)
    except canonical.CanonicalError as exc:
        raise GenesisError(f"genesis file {path}: {exc}") from None
    except GenesisError as exc:  # which file, for an operator who edited one by hand
        raise GenesisError(f"genesis file {path}: {exc}") from None
