"""At most one log line per key and interval, the rest counted: for what a peer can make
the node log as often as it likes (refused connections, junk sync answers). A review's
floods wrote ~1,100 warning lines a second; the metrics count every event all the same."""

from __future__ import annotations

import math
import time
from collections.abc import Hashable


class LogThrottle:
    """``allow(key)``: None while ``key`` logged less than ``interval`` seconds ago (the
    event is counted as muted), else how many were muted since its last line."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[Hashable, tuple[float, int]] = {}  # key -> (when logged, muted)

    def allow(self, key: Hashable) -> int | None:
        now = time.monotonic()
        last, muted = self._last.get(key, (-math.inf, 0))
        if now - last < self.interval:
            self._last[key] = (last, muted + 1)
            return None
        self._last[key] = (now, 0)
        return muted
