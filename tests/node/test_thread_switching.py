"""The node's thread switch interval (node.app.tune_thread_switching)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from node import app


def test_tuning_sets_the_short_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        app.tune_thread_switching()
        assert abs(sys.getswitchinterval() - app.SWITCH_INTERVAL_S) < 1e-9
        assert before > app.SWITCH_INTERVAL_S  # CPython's default is 5 ms
    finally:
        sys.setswitchinterval(before)


def test_run_node_tunes_it_before_the_node_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set first: a restarted node's block sync (the writes on a helper thread) begins as
    soon as it is built and started."""
    calls: list[str] = []

    class StopError(Exception):
        pass

    def built(config: object) -> None:
        calls.append("node")
        raise StopError

    monkeypatch.setattr(app, "tune_thread_switching", lambda: calls.append("switching"))
    monkeypatch.setattr(app, "Node", built)
    with pytest.raises(StopError):
        asyncio.run(app.run_node(None))  # type: ignore[arg-type]
    assert calls == ["switching", "node"]
