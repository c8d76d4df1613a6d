"""``[state] tree_cache_entries``: the state tree's bucket cache bound, from config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import ConfigError, load_config, render_config
from node.state_tree import DEFAULT_CACHE_ENTRIES
from node.store import LedgerStore


def write_home(tmp_path: Path, extra: str = "") -> Path:
    text = render_config(name="n0", p2p_listen="127.0.0.1:1", api_listen="127.0.0.1:2")
    (tmp_path / "config.toml").write_text(text + extra)
    return tmp_path


def test_the_rendered_config_names_the_default(tmp_path: Path) -> None:
    assert f"tree_cache_entries = {DEFAULT_CACHE_ENTRIES}" in render_config(
        name="n0", p2p_listen="127.0.0.1:1", api_listen="127.0.0.1:2")
    assert load_config(write_home(tmp_path)).tree_cache_entries == DEFAULT_CACHE_ENTRIES


def test_a_chosen_bound_reaches_the_state_tree(tmp_path: Path) -> None:
    home = write_home(tmp_path)
    text = (home / "config.toml").read_text().replace(
        f"tree_cache_entries = {DEFAULT_CACHE_ENTRIES}", "tree_cache_entries = 1234")
    (home / "config.toml").write_text(text)
    config = load_config(home)
    assert config.tree_cache_entries == 1234
    store = LedgerStore.open(str(tmp_path / "data"), chain_id="c", genesis_hash=b"\x00" * 32)
    try:
        tree = store.initialise(chain_id="c", genesis_hash=b"\x00" * 32, state={b"k": b"v"},
                                tree_cache_entries=config.tree_cache_entries)
        assert tree._cache_limit == 1234
        assert store.load_state_tree(config.tree_cache_entries)._cache_limit == 1234
        assert store.load_state_tree(0).root == tree.root  # uncached: same tree
    finally:
        store.close()


@pytest.mark.parametrize("value", ["-1", '"big"', "true"])
def test_invalid_tree_cache_bound_names_the_key(tmp_path: Path, value: str) -> None:
    home = write_home(tmp_path)
    text = (home / "config.toml").read_text().replace(
        f"tree_cache_entries = {DEFAULT_CACHE_ENTRIES}", f"tree_cache_entries = {value}")
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match="tree_cache_entries"):
        load_config(home)


def test_the_sync_diffs_bound_reaches_the_driver(tmp_path: Path) -> None:
    """``[p2p] sync_diffs_bytes``: how much of the recent blocks' diffs a node keeps for
    catching-up peers (docs/operations.md section 0)."""
    from node.recent_diffs import DEFAULT_MAX_BYTES

    home = write_home(tmp_path)
    assert f"sync_diffs_bytes = {DEFAULT_MAX_BYTES}" in (home / "config.toml").read_text()
    assert load_config(home).sync_diffs_bytes == DEFAULT_MAX_BYTES
    for value, ok in (("0", True), ("1048576", True), ("-1", False), ('"lots"', False)):
        text = (home / "config.toml").read_text().replace(
            f"sync_diffs_bytes = {DEFAULT_MAX_BYTES}", f"sync_diffs_bytes = {value}")
        (tmp_path / "other").mkdir(exist_ok=True)
        (tmp_path / "other" / "config.toml").write_text(text)
        if ok:
            assert load_config(tmp_path / "other").sync_diffs_bytes == int(value)
        else:
            with pytest.raises(ConfigError, match="sync_diffs_bytes"):
                load_config(tmp_path / "other")


def test_a_node_keeps_diffs_up_to_its_configured_bound(tmp_path: Path) -> None:
    from cli.network import init_network
    from cli.presets import CONTRACTS, PRESETS
    from node.app import Node

    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="diff-bound", base_port=40200)
    home = tmp_path / "net" / "customs"
    text = (home / "config.toml").read_text()
    (home / "config.toml").write_text(
        "\n".join("sync_diffs_bytes = 12345" if line.startswith("sync_diffs_bytes") else line
                  for line in text.splitlines()))
    node = Node(load_config(home))
    try:
        assert node.driver.diffs.max_bytes == 12345
    finally:
        node.store.close()


def test_block_announcements_are_on_by_default_and_reach_the_driver(tmp_path: Path) -> None:
    """``[p2p] block_announcements``: announce our blocks and execute peers' announced
    blocks ahead of their proposals (node/driver.py, docs/operations.md section 0)."""
    from cli.network import init_network
    from cli.presets import CONTRACTS, PRESETS
    from node.app import Node

    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="announce", base_port=40300)
    home = tmp_path / "net" / "customs"
    text = (home / "config.toml").read_text()
    assert "block_announcements = true" in text
    assert load_config(home).block_announcements is True
    for value, ok in (("true", True), ("false", True), ("1", False), ('"yes"', False)):
        (home / "config.toml").write_text(
            text.replace("block_announcements = true", f"block_announcements = {value}"))
        if not ok:
            with pytest.raises(ConfigError, match="block_announcements"):
                load_config(home)
            continue
        node = Node(load_config(home))
        try:
            assert node.driver.speculate is (value == "true")
        finally:
            node.store.close()


def test_invalid_wait_commit_timeout_beyond_what_the_api_allows(tmp_path: Path) -> None:
    """Review: above 300 s every ``wait=commit`` without ``?timeout=`` got a 400 blamed on
    the client (the API allows at most 300)."""
    home = write_home(tmp_path)
    text = (home / "config.toml").read_text()
    assert "wait_commit_timeout_s = 30" in text
    (home / "config.toml").write_text(text.replace("wait_commit_timeout_s = 30",
                                                   "wait_commit_timeout_s = 301"))
    with pytest.raises(ConfigError, match="at most 300"):
        load_config(home)


@pytest.mark.parametrize("section,key", [("mempool", "max_txs"), ("mempool", "max_bytes"),
                                         ("api", "max_request_bytes"),
                                         ("api", "read_auth_window_s"),
                                         ("api", "max_connections"), ("api", "idle_timeout_s"),
                                         ("api", "wait_commit_timeout_s")])
def test_invalid_zero_bound_names_the_key_in_the_file(tmp_path: Path, section: str,
                                                      key: str) -> None:
    """Review: ``max_txs = 0`` was reported as ``mempool_max_txs: must be positive``, a
    name the file does not have."""
    home = write_home(tmp_path)
    lines = (home / "config.toml").read_text().splitlines()
    out, current, placed = [], "", False
    for line in lines:
        if line.startswith("["):
            current = line.strip("[]")
        if current == section and line.split("=")[0].strip() == key:
            continue  # the rendered value, replaced below
        out.append(line)
        if line == f"[{section}]" and not placed:
            out.append(f"{key} = 0")
            placed = True
    if not placed:
        out += [f"[{section}]", f"{key} = 0"]
    (home / "config.toml").write_text("\n".join(out) + "\n")
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: must be positive$"):
        load_config(home)
