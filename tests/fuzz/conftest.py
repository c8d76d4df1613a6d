from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from netutil import make_network


@pytest.fixture(scope="package")
def network(tmp_path_factory):
    """Four real node processes shared by the fuzz and security tests of this package."""
    net = make_network(tmp_path_factory.mktemp("fuzz") / "net")
    net.start_all()
    yield net
    net.stop_all()
