"""A contract shipped as its own package is found through the ``jangbu.contracts`` entry
point, named by genesis, and runs like a built-in one."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

from contracts import membership
from contracts.sdk import Contract
from node.registry import ContractLoadError, available_contracts, installed_version, load_contracts

from contract_harness import Ledger

PACKAGE = Path(__file__).with_name("example_contract")


@pytest.fixture
def installed_notes(tmp_path):
    """Install the example package the way pip lays it out: module + dist-info metadata."""
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE / "jangbu_notes", site / "jangbu_notes")
    info = site / "jangbu_notes-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jangbu-notes\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(
        "[jangbu.contracts]\nnotes = jangbu_notes:NotesContract\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield
    sys.path.remove(str(site))
    sys.modules.pop("jangbu_notes", None)
    importlib.invalidate_caches()


def test_third_party_contract_is_found_loaded_and_runs(installed_notes):
    assert available_contracts()["notes"] == "jangbu_notes:NotesContract"
    contracts = load_contracts([("membership", "1"), ("notes", "1")])
    ledger = Ledger(contracts=contracts)
    ledger.add_org("farm-a", ["farm"])
    receipt = ledger.apply("farm-a", "notes", "post", {"topic": "feed", "text": "hay delivered"})
    assert receipt.ok and receipt.events[0].type == "posted"
    assert ledger.query("notes", "topic", {"topic": "feed"})[0]["org"] == "farm-a"
    assert ledger.apply("farm-a", "notes", "edit", {"topic": "feed"}).code == "E_UNKNOWN_ACTION"


def test_invalid_contract_not_installed_is_a_clear_error():
    with pytest.raises(ContractLoadError, match="not installed"):
        load_contracts([("membership", "1"), ("notes", "1")])


def test_invalid_contract_version_mismatch_is_a_clear_error(installed_notes):
    with pytest.raises(ContractLoadError, match="genesis requires 2"):
        load_contracts([("notes", "2")])


def test_each_builtin_contract_loads_alone():
    for name, version in (("membership", "2"), ("clearance", "5"), ("livestock", "3")):
        assert list(load_contracts([(name, version)])) == [name]
        assert installed_version(name) == version
    # Chains begun under clearance 2 or livestock 1 keep running their rules on this build.
    assert list(load_contracts([("clearance", "2")])) == ["clearance"]
    assert list(load_contracts([("clearance", "3")])) == ["clearance"]
    assert list(load_contracts([("clearance", "4")])) == ["clearance"]
    assert list(load_contracts([("livestock", "1")])) == ["livestock"]
    assert list(load_contracts([("livestock", "2")])) == ["livestock"]
    assert membership.NAME == "membership"


def test_a_contract_whose_version_is_an_int_still_loads_the_version_genesis_names():
    """``network init`` writes ``str(cls.version)``; a third-party class declaring
    ``version = 1`` (an int) loaded before ``for_version`` and must still (review)."""

    class IntVersioned(Contract):
        name = "intver"
        version = 1  # type: ignore[assignment]

        def check(self, call): ...

        def apply(self, ctx, call): ...

    assert isinstance(IntVersioned.for_version("1"), IntVersioned)
    assert IntVersioned.for_version("2") is None
