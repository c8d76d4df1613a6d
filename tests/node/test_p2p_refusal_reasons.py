"""Every reason the transport can refuse a connection for has its ``/metrics`` counter.

A static check, as tests/node/test_metrics_declared.py does for the driver's counters:
``/metrics`` declares one ``jangbu_p2p_refused_total{reason=…}`` series per entry of
``REFUSAL_REASONS``, and a reason missing from it would be counted in memory and
exported nowhere (before this, no refusal was exported at all, and an operator could not
alert on a genesis or runtime mismatch)."""

from __future__ import annotations

import re
from pathlib import Path

from node.p2p.peer_manager import REFUSAL_REASONS

P2P = Path(__file__).resolve().parents[2] / "node" / "p2p"

RAISED = re.compile(r'HandshakeError\(\s*"([a-z_]+)"')
COUNTED = re.compile(r'(?:_reject\(|rejected\[)\s*"([a-z_]+)"')


def reasons_in_code() -> set[str]:
    found: set[str] = set()
    for path in P2P.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found.update(RAISED.findall(text))
        found.update(COUNTED.findall(text))
    return found


def test_every_refusal_reason_in_the_code_is_declared() -> None:
    used = reasons_in_code()
    assert {"genesis", "runtime", "unknown_key", "duplicate"} <= used  # the scan works
    assert used - set(REFUSAL_REASONS) == set()


def test_no_declared_reason_is_unused() -> None:
    assert set(REFUSAL_REASONS) - reasons_in_code() == set()
    assert len(REFUSAL_REASONS) == len(set(REFUSAL_REASONS))
