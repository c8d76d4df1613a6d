"""Helpers for the web tests that test modules import by name (not through conftest)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_async(coro: Any) -> Any:
    """Run ``coro`` to completion in its own thread: Playwright's sync API owns this
    thread's event loop once the browser is up."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
