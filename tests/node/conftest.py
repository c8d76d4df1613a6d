"""Fixtures shared by the driver's tests in this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.driver import ConsensusDriver

from driver_chain import validator_driver
from ledger_support import make_genesis

FOUR = ["v0", "v1", "v2", "v3"]


@pytest.fixture
def driver_of_four(tmp_path: Path) -> Iterator[ConsensusDriver]:
    """Validator v0 of four (f = 1), a real driver over its own store, linked to nobody."""
    built = validator_driver(tmp_path, make_genesis(FOUR), "v0")
    yield built
    built.store.close()
