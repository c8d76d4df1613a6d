"""``jangbu network init``: a genesis file and one node home per organisation.

Like ``cometbft testnet``: every home gets its own ``config.toml``, node key, admin member
key and a copy of the genesis. Ports are ``base + 2*i`` (p2p) and ``base + 2*i + 1`` (API).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from pathlib import Path

from nacl.signing import SigningKey

from cli.presets import BUSINESS_IDS, CONTRACTS
from node.block import BLOCK_VERSION_SIGNED
from node.config import render_config
from node.genesis import ConsensusParams, parse_genesis
from node.keys import write_key_file
from node.registry import installed_version

DEFAULT_BASE_PORT = 26600


def databases_in_use(directory: Path) -> list[Path]:
    """LevelDB directories under ``directory`` that a running process holds open.

    LevelDB holds a POSIX record lock on its ``LOCK`` file while open; trying the same lock
    from here fails exactly then (and takes nothing from the holder: the lock is released
    at once when it was free).
    """
    held = []
    for lock in sorted(directory.glob("**/LOCK")):
        try:
            with open(lock, "a") as handle:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(handle, fcntl.LOCK_UN)
        except BlockingIOError:
            held.append(lock.parent)
        except OSError:
            continue  # unreadable: not ours to judge; rmtree reports what it cannot remove
    return held


def init_network(
    directory: Path,
    orgs: list[tuple[str, str, list[str]]],
    contracts: list[str],
    *,
    chain_id: str,
    base_port: int = DEFAULT_BASE_PORT,
    host: str = "127.0.0.1",
    force: bool = False,
    consensus: dict[str, int] | None = None,
) -> Path:
    """Write the network into ``directory``; returns the genesis path.

    Raises ContractLoadError (before writing anything) if a contract is not installed:
    genesis names each contract with the version installed here.
    """
    versions = {name: installed_version(name) for name in contracts}
    # Checked before anything is written (regression: a refused init left an empty
    # directory behind).
    if base_port < 1024 or base_port + 2 * len(orgs) > 65535:
        raise ValueError("--base-port must leave room for two ports per node below 65536")
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    if directory.exists() and any(directory.iterdir()):
        if not force:
            raise FileExistsError(f"{directory} is not empty; use --force to replace it")
        running = databases_in_use(directory)
        if running:
            # Regression: --force deleted the keys and data of a running node, which went
            # on committing to unlinked files.
            raise FileExistsError(
                f"a node is running on {', '.join(str(p) for p in running)}; stop it "
                f"before replacing {directory}")
    node_keys: dict[str, SigningKey] = {}
    member_keys: dict[str, SigningKey] = {}
    validators, genesis_orgs = [], []
    for i, (org_id, name, roles) in enumerate(orgs):
        node_keys[org_id] = SigningKey.generate()
        member_keys[org_id] = SigningKey.generate()
        validators.append({
            "name": org_id, "org": org_id,
            "pubkey": node_keys[org_id].verify_key.encode().hex(),
            "p2p": f"{host}:{base_port + 2 * i}",
            "api": f"http://{host}:{base_port + 2 * i + 1}",
        })
        genesis_orgs.append({
            "id": org_id, "name": name, "roles": roles,
            "business_ids": BUSINESS_IDS.get(org_id, []),
            "keys": [{"pubkey": member_keys[org_id].verify_key.encode().hex(),
                      "roles": [*roles, "admin"], "kind": "member", "label": f"{org_id} admin"}],
        })
    genesis = {
        "chain_id": chain_id,
        "genesis_time_ms": int(time.time() * 1000),
        "validators": validators,
        "orgs": genesis_orgs,
        "contracts": [{"name": c, "version": versions[c]} for c in contracts],
        # Block version 2: certified blocks pin their signatures (node/block.py).
        "consensus": {"block_version": BLOCK_VERSION_SIGNED, **(consensus or {})},
    }
    # Refuse a network that would not start before anything is deleted or written
    # (regression: a bad --param under --force had already deleted the old network).
    parse_genesis(genesis)
    if directory.exists() and any(directory.iterdir()):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(genesis, indent=2) + "\n"
    genesis_path = directory / "genesis.json"
    genesis_path.write_text(text)
    for i, (org_id, _, _) in enumerate(orgs):
        home = directory / org_id
        home.mkdir()
        (home / "genesis.json").write_text(text)
        (home / "config.toml").write_text(render_config(
            name=org_id, p2p_listen=f"{host}:{base_port + 2 * i}",
            api_listen=f"{host}:{base_port + 2 * i + 1}"))
        write_key_file(home / "node.key", node_keys[org_id], "node")
        write_key_file(home / "member.key", member_keys[org_id], "member")
    return genesis_path


def parse_params(items: list[str] | None) -> dict[str, int]:
    """``NAME=VALUE`` strings from ``--param`` as genesis consensus parameters.

    Only the form is checked here (a known name, an integer); ranges are genesis' own rules,
    checked by :func:`init_network` before anything is written.
    """
    known = ConsensusParams().to_obj()
    params: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        if name not in known:
            raise ValueError(f"--param {name}: unknown consensus parameter (known: "
                             f"{', '.join(sorted(known))})")
        if name in params:
            raise ValueError(f"--param {name}: given twice")
        try:
            params[name] = int(value.strip())
        except ValueError:
            raise ValueError(f"--param {name}: {value!r} is not an integer") from None
    return params


def preset_contracts(preset: str) -> list[str]:
    return CONTRACTS[preset]
