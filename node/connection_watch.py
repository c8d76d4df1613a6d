"""Telling a long-running HTTP handler that its client has gone.

aiohttp does not cancel a handler when its connection is lost (``handler_cancellation``
is off by default, and turning it on would cancel submits half-way through their commit
wait), and it offers no hook for it. An event stream waiting for records that never come
would notice only at its next keepalive write, 15 s later; a client opening streams and
resetting them at once kept thousands of such subscriptions alive, each one matched
against every committed record (review). The node's connection handler
(``JsonErrorsRequestHandler`` in node/app.py) calls :func:`connection_lost` from its own
``connection_lost``; a handler registers what to do with :func:`watch`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_WATCHERS: dict[Any, Callable[[], None]] = {}
"""Connection handler (aiohttp's ``request.protocol``) -> what to call when it is lost.
Keyed by the object itself (its slots admit no weak reference); every :func:`watch` is
undone by the function it returns, so nothing outlives its request."""


def watch(request: Any, on_lost: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_lost`` when ``request``'s connection is lost (at once if it already is);
    returns the function that stops watching."""
    protocol = request.protocol
    if protocol is None or request.transport is None:
        on_lost()
        return lambda: None
    _WATCHERS[protocol] = on_lost

    def unwatch() -> None:
        if _WATCHERS.get(protocol) is on_lost:
            del _WATCHERS[protocol]

    return unwatch


def connection_lost(protocol: Any) -> None:
    """Called by the connection handler once its connection is gone."""
    on_lost = _WATCHERS.pop(protocol, None)
    if on_lost is not None:
        on_lost()


def watched() -> int:
    """How many connections are watched now (for tests)."""
    return len(_WATCHERS)
