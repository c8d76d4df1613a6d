"""Test networks listen outside the ephemeral port range.

Regression: CI once failed six e2e tests because a node exited with "address already in use"
on a port inside 32768-60999 - an outgoing connection had taken it after the free-port probe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import port_support
from hypothesis import given
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parents[1]
for folder in ("e2e", "cli"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

from cli_support import free_ports  # noqa: E402
from netutil import free_base_port as e2e_free_base_port  # noqa: E402


def outside(base: int, count: int, ephemeral: tuple[int, int]) -> bool:
    low, high = ephemeral
    return base + count - 1 < low or base > high


def test_reads_the_kernel_range(tmp_path: Path) -> None:
    path = tmp_path / "range"
    path.write_text("40000\t50000\n")
    assert port_support.ephemeral_range(path) == (40000, 50000)
    assert port_support.ephemeral_range(tmp_path / "missing") == (32768, 60999)


@given(low=st.integers(1024, 60000), width=st.integers(0, 4000), count=st.integers(1, 40))
def test_every_candidate_base_is_outside_the_ephemeral_range(
        low: int, width: int, count: int) -> None:
    ephemeral = (low, min(low + width, 65000))
    start, stop = port_support.candidate_window(count, ephemeral)
    assert start < stop
    for base in (start, stop - 1):
        assert outside(base, count, ephemeral)
        assert base + count - 1 <= 65535


def test_helpers_used_by_the_suites_avoid_the_ephemeral_range() -> None:
    ephemeral = port_support.ephemeral_range()
    for _ in range(20):
        assert outside(e2e_free_base_port(8), 8, ephemeral)
        assert outside(free_ports(8), 8, ephemeral)
