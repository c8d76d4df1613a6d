"""The node's collector tuning at start (node.app.tune_garbage_collector)."""

from __future__ import annotations

import gc

import pytest

from node.app import GC_GEN0_THRESHOLD, tune_garbage_collector


def test_tuning_freezes_start_up_objects_without_a_full_collection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection here cost a restarted node 15-28 ms on its way to its first synced
    block; the start-up objects are frozen as they are."""

    def no_collection(*args: object) -> int:
        raise AssertionError("tune_garbage_collector must not run a full collection")

    threshold = gc.get_threshold()
    monkeypatch.setattr(gc, "collect", no_collection)
    try:
        tune_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
