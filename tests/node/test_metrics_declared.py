"""Every counter the node increments is on /metrics at 0 from the start.

Regression (operator review): counters appeared only at their first increment, so an
alert such as ``increase(jangbu_evidence_total[5m]) > 0`` had no series to start from and
did not fire on the first evidence ever seen.
"""

from __future__ import annotations

import re
from pathlib import Path

from node.driver import COUNTERS
from node.metrics import Metrics

NODE = Path(__file__).resolve().parents[2] / "node"
INCREMENTED = re.compile(r"metrics\.inc\(\s*\"(jangbu_[a-z0-9_]+)\"")


def test_every_incremented_counter_is_declared() -> None:
    names = {name for path in NODE.rglob("*.py")
             for name in INCREMENTED.findall(path.read_text(encoding="utf-8"))}
    assert names, "the pattern no longer finds the increments"
    assert names <= set(COUNTERS), sorted(names - set(COUNTERS))


def test_a_declared_counter_renders_at_zero_with_its_help_and_keeps_counting() -> None:
    metrics = Metrics()
    metrics.declare("jangbu_evidence_total", "double signs seen")
    text = metrics.render()
    assert "# HELP jangbu_evidence_total double signs seen" in text
    assert "\njangbu_evidence_total 0\n" in text + "\n"
    metrics.inc("jangbu_evidence_total")
    metrics.declare("jangbu_evidence_total", "double signs seen")  # never resets
    assert "jangbu_evidence_total 1" in metrics.render()
