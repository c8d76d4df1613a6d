"""Node configuration: one ``config.toml`` per node home, validated at start.

A node home looks like::

    HOME/
      config.toml     this file (paths inside are relative to HOME)
      genesis.json    the network's genesis (identical on every node)
      node.key        the node's Ed25519 key (mode 0600)
      data/           LevelDB ledger store

The addresses and logging can also be set by ``jangbu node start`` flags. Errors name the
key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node.defaults import MAX_WAIT_COMMIT_S, RUNTIME_CHECKS
from node.defaults import SYNC_DIFFS_BYTES as DEFAULT_SYNC_DIFFS_BYTES
from node.defaults import TREE_CACHE_ENTRIES as DEFAULT_CACHE_ENTRIES

ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})")
LOG_LEVELS = ("debug", "info", "warning", "error")


POSITIVE_KEYS = {
    "mempool_max_txs": "mempool.max_txs",
    "mempool_max_bytes": "mempool.max_bytes",
    "max_request_bytes": "api.max_request_bytes",
    "wait_commit_timeout_s": "api.wait_commit_timeout_s",
    "read_auth_window_s": "api.read_auth_window_s",
    "max_connections": "api.max_connections",
    "idle_timeout_s": "api.idle_timeout_s",
}
"""Fields that must be positive, and the ``config.toml`` key each comes from: errors name
the key an operator can find in the file (review: they named the field)."""


class ConfigError(ValueError):
    """config.toml (or a flag) is invalid; the message names the key."""


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    name: str
    genesis_file: Path
    node_key_file: Path
    data_dir: Path
    p2p_listen: str
    api_listen: str
    log_level: str = "info"
    log_format: str = "text"
    mempool_max_txs: int = 100_000
    mempool_max_bytes: int = 128 * 1024 * 1024
    max_request_bytes: int = 8 * 1024 * 1024
    wait_commit_timeout_s: int = 30
    read_auth_window_s: int = 60
    max_connections: int = 1000
    idle_timeout_s: int = 60
    tree_cache_entries: int = DEFAULT_CACHE_ENTRIES
    sync_diffs_bytes: int = DEFAULT_SYNC_DIFFS_BYTES
    block_announcements: bool = True
    runtime_check: str = "refuse"

    @property
    def p2p_host(self) -> str:
        return split_address(self.p2p_listen, "p2p.listen")[0]

    @property
    def p2p_port(self) -> int:
        return split_address(self.p2p_listen, "p2p.listen")[1]

    @property
    def api_host(self) -> str:
        return split_address(self.api_listen, "api.listen")[0]

    @property
    def api_port(self) -> int:
        return split_address(self.api_listen, "api.listen")[1]

    def with_overrides(self, **overrides: Any) -> NodeConfig:
        clean = {k: v for k, v in overrides.items() if v is not None}
        config = replace(self, **clean)
        config.validate()
        return config

    def validate(self) -> None:
        split_address(self.p2p_listen, "p2p.listen")
        split_address(self.api_listen, "api.listen")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"node.log_level: must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in ("text", "json"):
            raise ConfigError("node.log_format: must be 'text' or 'json'")
        for name, key in POSITIVE_KEYS.items():
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}: must be positive")
        if self.wait_commit_timeout_s > MAX_WAIT_COMMIT_S:  # what ?timeout= allows
            raise ConfigError(f"api.wait_commit_timeout_s: must be at most {MAX_WAIT_COMMIT_S}")
        if self.tree_cache_entries < 0:
            raise ConfigError("state.tree_cache_entries: must be 0 (off) or positive")
        if self.sync_diffs_bytes < 0:
            raise ConfigError("p2p.sync_diffs_bytes: must be 0 (off) or positive")
        if self.runtime_check not in RUNTIME_CHECKS:
            raise ConfigError(f"p2p.runtime_check: must be one of {', '.join(RUNTIME_CHECKS)}")


def split_address(value: str, key: str) -> tuple[str, int]:
    match = ADDRESS.fullmatch(value or "")
    if match is None:
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    port = int(match.group("port"))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} out of range")
    return match.group("host").strip("[]"), port


def _get(table: dict[str, Any], section: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(section, {}).get(key, default)
    if value is None:
        raise ConfigError(f"{section}.{key}: missing")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{section}.{key}: must be an integer")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{section}.{key}: must be a string")
    if kind is str and "\0" in value:  # (a path with one was a traceback at the open)
        raise ConfigError(f"{section}.{key}: must not contain a NUL character")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{section}.{key}: must be true or false")
    return value


def load_config(home: str | Path) -> NodeConfig:
    home = Path(home).resolve()
    path = home / "config.toml"
    if not home.is_dir():
        raise ConfigError(f"node home {home} does not exist (create it with `jangbu network init`)")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; is {home} a node home?") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): TOML is UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for section, content in table.items():
        if section not in ("node", "p2p", "api", "mempool", "state"):
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: [{section}] must be a table of keys, not a value")
    used: set[tuple[str, str]] = set()

    def get(section: str, key: str, kind: type, default: Any) -> Any:
        used.add((section, key))
        return _get(table, section, key, kind, default)

    config = NodeConfig(
        home=home,
        name=get("node", "name", str, home.name),
        genesis_file=home / get("node", "genesis", str, "genesis.json"),
        node_key_file=home / get("node", "node_key", str, "node.key"),
        data_dir=home / get("node", "data_dir", str, "data"),
        log_level=get("node", "log_level", str, "info"),
        log_format=get("node", "log_format", str, "text"),
        p2p_listen=get("p2p", "listen", str, None),
        sync_diffs_bytes=get("p2p", "sync_diffs_bytes", int, DEFAULT_SYNC_DIFFS_BYTES),
        block_announcements=get("p2p", "block_announcements", bool, True),
        runtime_check=get("p2p", "runtime_check", str, "refuse"),
        api_listen=get("api", "listen", str, None),
        mempool_max_txs=get("mempool", "max_txs", int, 100_000),
        mempool_max_bytes=get("mempool", "max_bytes", int, 128 * 1024 * 1024),
        max_request_bytes=get("api", "max_request_bytes", int, 8 * 1024 * 1024),
        wait_commit_timeout_s=get("api", "wait_commit_timeout_s", int, 30),
        read_auth_window_s=get("api", "read_auth_window_s", int, 60),
        max_connections=get("api", "max_connections", int, 1000),
        idle_timeout_s=get("api", "idle_timeout_s", int, 60),
        tree_cache_entries=get("state", "tree_cache_entries", int, DEFAULT_CACHE_ENTRIES),
    )
    unknown = sorted(f"[{section}] {key}" for section, content in table.items()
                     for key in content if (section, key) not in used)
    if unknown:  # a misspelt key silently kept its default (review)
        raise ConfigError(f"{path}: unknown key {unknown[0]} (docs/operations.md "
                          "section 10 lists the keys of each section)")
    config.validate()
    return config


def render_config(*, name: str, p2p_listen: str, api_listen: str) -> str:
    """The config.toml that ``jangbu network init`` writes for one node."""
    return f"""# jangbu node configuration (paths are relative to this directory)
[node]
name = "{name}"
genesis = "genesis.json"
node_key = "node.key"
data_dir = "data"
log_level = "info"      # debug | info | warning | error
log_format = "text"     # text | json

[p2p]
listen = "{p2p_listen}"
# Recent blocks' state writes and receipts kept in memory (wire bytes, ~1.2x that in RAM)
# and sent with those blocks to a catching-up peer, which then applies them instead of
# executing the blocks (docs/operations.md section 0). 0 keeps none.
sync_diffs_bytes = {DEFAULT_SYNC_DIFFS_BYTES}
# Announce our blocks' transactions before building them, and execute the blocks peers
# announce before their proposals arrive, alongside the proposer (docs/operations.md
# section 0). Off: neither; the node still agrees with nodes that have it on.
block_announcements = true
# A validator naming another Python minor version or Unicode version when it connects:
# "refuse" the link, or "warn" and connect (docs/operations.md, one Python on every
# validator: receipts can differ between versions).
runtime_check = "refuse"

[api]
listen = "{api_listen}"
max_request_bytes = 8388608
wait_commit_timeout_s = 30
read_auth_window_s = 60   # signed read requests must be this fresh (seconds)
# Open HTTP connections (event streams included); one more is answered 503 E_BUSY and
# closed, so that clients cannot take the file descriptors LevelDB and peers need.
max_connections = 1000
# A connection that sends no complete request for this long is closed (a half-sent
# request included); so is a request body that takes longer than this to arrive.
idle_timeout_s = 60

[mempool]
max_txs = 100000
max_bytes = 134217728

[state]
# Committed state-tree buckets kept in memory (one unit per bucket + one per key, ~100 bytes
# a unit): beyond it, blocks read their buckets from LevelDB (docs/operations.md section 0).
tree_cache_entries = {DEFAULT_CACHE_ENTRIES}
"""
