"""``cached_property`` without a lock, as Python 3.12 made ``functools.cached_property``.

Why: on Python 3.11 ``functools.cached_property`` takes an ``RLock`` on every first read.
The values cached here (a transaction's canonical bytes, its hash, a receipt's encoding)
are pure functions of frozen fields, so two threads computing one at once would store
equal values; the lock buys nothing, and it was ~0.5 µs of each first read, several per
transaction on every node (docs/benchmarks.md, twelfth round).

A non-data descriptor: once the value is in the instance's ``__dict__``, attribute lookup
finds it there and never calls :meth:`__get__` again. Frozen dataclasses allow this (they
refuse ``__setattr__``, not writes to ``__dict__``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class cached_property(Generic[T]):  # noqa: N801 - named after the functools one it stands for
    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.attrname = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.attrname = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            cache = instance.__dict__
        except AttributeError:  # as functools says it, not as an attribute that is missing
            raise TypeError(f"{type(instance).__name__} has no __dict__ to cache "
                            f"{self.attrname!r} in") from None
        value = self.func(instance)
        cache[self.attrname] = value
        return value


__all__ = ["cached_property"]
