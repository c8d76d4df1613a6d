"""The "stopped at height N" line names the height the store holds once the node stopped.

Regression (operator review): the height was read before ``Node.stop``, which finishes the
commit in flight, so a SIGTERM during a commit logged one less than the store held, and
operators compare that line with their peers' heights (docs/operations.md §2).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from node.app import stop_and_log


class _CommitsOnStop:
    """A node whose stop finishes one commit in flight, as Node.stop does under load."""

    def __init__(self) -> None:
        self.store = SimpleNamespace(height=3)

    async def stop(self) -> None:
        self.store.height = 4


async def test_the_logged_height_includes_the_commit_the_stop_finished(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jangbu.node")
    assert await stop_and_log(_CommitsOnStop(), "/data") == 4
    assert "stopped at height 4" in caplog.text and "height 3" not in caplog.text
