"""Fixtures for the CLI tests (helpers live in cli_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import free_ports, jangbu


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A fresh single-validator network (``solo``) in a temp dir: (dir, base port)."""
    base = free_ports(2)
    directory = tmp_path / "net"
    result = jangbu("network", "init", "--orgs", "solo:customs", "--dir", directory,
                    "--base-port", base)
    assert result.returncode == 0, result.stderr
    yield directory, base
