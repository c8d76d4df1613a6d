"""Converting canonical objects to JSON for the HTTP API: bytes become lowercase hex."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def to_json(obj: Any) -> Any:
    kind = type(obj)
    if kind is str or kind is int or obj is None or kind is bool:
        return obj  # the common leaves first: this runs for every streamed event
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return obj
