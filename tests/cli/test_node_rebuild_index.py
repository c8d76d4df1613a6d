"""``jangbu node rebuild-index``: a stopped node's leaf index rebuilt from its stored values,
as a user runs it (a real subprocess on a real LevelDB store), and refused when the values
themselves do not give the chain's state root.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plyvel
import pytest

from cli.network import init_network
from cli.presets import CONTRACTS, PRESETS
from node.app import Node
from node.config import NodeConfig, load_config
from node.state_tree import LEAF_PREFIX, StateTree, key_hash, value_hash
from node.store import STATE_PREFIX
from tests.ledger_support import add_member_tx, certify, seed_key

from cli_support import jangbu


def node_with_a_block(tmp_path: Path, port: int) -> NodeConfig:
    """A customs node's home whose store holds genesis and one block of state writes."""
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="rebuild-index", base_port=port)
    config = load_config(tmp_path / "net" / "customs")
    node = Node(config)
    try:
        block = node.engine.build_block(proposer=node.pubkey,
                                        time_ms=node.genesis.genesis_time_ms + 5,
                                        txs=[add_member_tx(seed_key("v0"), "extra", 1)],
                                        last_commit=None)
        node.engine.commit(block, certify(1, block.hash, [seed_key("v0")]))
    finally:
        node.store.close()
    return config


def leaves(config: NodeConfig) -> dict[bytes, bytes]:
    db = plyvel.DB(str(config.data_dir))
    try:
        return dict(db.iterator(prefix=LEAF_PREFIX))
    finally:
        db.close()


def damage(config: NodeConfig, harm: Callable[[plyvel.DB], None]) -> None:
    db = plyvel.DB(str(config.data_dir))
    try:
        harm(db)
    finally:
        db.close()


def drop_a_leaf(db: plyvel.DB) -> None:
    key, _ = next(iter(db.iterator(prefix=LEAF_PREFIX)))
    db.delete(key)


def add_a_leaf(db: plyvel.DB) -> None:
    db.put(LEAF_PREFIX + key_hash(b"membership/ghost"), value_hash(b"boo"))


def change_a_leaf(db: plyvel.DB) -> None:
    key, _ = next(iter(db.iterator(prefix=LEAF_PREFIX)))
    db.put(key, value_hash(b"other"))


def fold_a_leaf(db: plyvel.DB) -> None:
    """A malformed entry: another entry's key and value hash folded into a value."""
    (first, vhash), (second, other) = list(db.iterator(prefix=LEAF_PREFIX))[:2]
    db.delete(second)
    db.put(first, vhash + second[len(LEAF_PREFIX):] + other)


@pytest.mark.parametrize("harm, fixed", [(drop_a_leaf, 1), (add_a_leaf, 1),
                                         (change_a_leaf, 1), (fold_a_leaf, 2)])
def test_a_damaged_index_is_rebuilt_from_the_values(tmp_path: Path, harm, fixed: int) -> None:
    config = node_with_a_block(tmp_path, 40340)
    intact = leaves(config)
    damage(config, harm)
    assert leaves(config) != intact
    result = jangbu("node", "rebuild-index", "--home", config.home)
    assert result.returncode == 0, result.stderr
    assert f"{len(intact):,} entries ({fixed} entries were wrong, missing or extra)" \
        in result.stdout, result.stdout
    assert leaves(config) == intact
    # and the node starts on it, its tree the one the index and the values both give
    node = Node(config)
    try:
        assert StateTree.load(node.store.leaves, 0).root == node.engine.tree.root
        assert node.store.height == 1
    finally:
        node.store.close()


def test_an_intact_index_is_left_as_it_was(tmp_path: Path) -> None:
    config = node_with_a_block(tmp_path, 40350)
    intact = leaves(config)
    result = jangbu("node", "rebuild-index", "--home", config.home)
    assert result.returncode == 0, result.stderr
    assert "the index was intact" in result.stdout and "at height 1" in result.stdout
    assert leaves(config) == intact


def test_damaged_values_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    config = node_with_a_block(tmp_path, 40360)
    damage(config, drop_a_leaf)
    before = leaves(config)

    def change_a_value(db: plyvel.DB) -> None:
        key, _ = next(iter(db.iterator(prefix=STATE_PREFIX)))
        db.put(key, b"\xc0damaged")

    damage(config, change_a_value)
    result = jangbu("node", "rebuild-index", "--home", config.home)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "values themselves are damaged" in result.stderr and "state_root" in result.stderr
    assert leaves(config) == before


def test_a_running_node_is_not_touched(tmp_path: Path) -> None:
    config = node_with_a_block(tmp_path, 40370)
    node = Node(config)  # holds the store's LevelDB lock, as a running node does
    try:
        result = jangbu("node", "rebuild-index", "--home", config.home)
    finally:
        node.store.close()
    assert result.returncode == 1
    assert "in use by another process" in result.stderr, result.stderr


def test_a_home_without_data_is_a_clear_error(tmp_path: Path) -> None:
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="rebuild-index", base_port=40380)
    result = jangbu("node", "rebuild-index", "--home", tmp_path / "net" / "customs")
    assert result.returncode == 1
    assert "nothing to rebuild" in result.stderr
    result = jangbu("node", "rebuild-index", "--home", tmp_path / "nowhere")
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_the_stop_message_names_the_command(tmp_path: Path) -> None:
    """A node that stops on a damaged index entry tells the operator how to repair it."""
    from node.app import fatal_message
    from node.state_tree import LeafIndexError

    message = fatal_message(
        LeafIndexError("the leaf index's bucket 7 does not match the stored values"),
        tmp_path / "data")
    assert "is damaged (the leaf index's bucket 7" in message
    assert "jangbu node rebuild-index" in message and "operations.md" in message
