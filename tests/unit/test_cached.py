"""consensus.cached.cached_property: computed once, kept in the instance, no lock."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.cached import cached_property
from node.tx import Transaction


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    calls: list[int] = dataclasses.field(default_factory=list, compare=False)

    @cached_property
    def double(self) -> int:
        """Twice x."""
        self.calls.append(self.x)
        return 2 * self.x


def test_computed_once_per_instance_and_stored_in_its_dict() -> None:
    one, two = Point(1), Point(2)
    assert (one.double, one.double, two.double) == (2, 2, 4)
    assert one.calls == [1] and two.calls == [2]
    assert one.__dict__["double"] == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.double = 5  # type: ignore[misc]  # still frozen


def test_read_on_the_class_it_is_the_descriptor_with_its_doc() -> None:
    assert isinstance(Point.double, cached_property)
    assert Point.double.__doc__ == "Twice x."
    assert Point.double.attrname == "double"
    assert not hasattr(Point.double, "lock")  # functools' 3.11 one holds an RLock


def test_a_class_without_a_dict_gets_a_type_error() -> None:
    class Slotted:
        __slots__ = ("x",)

        def __init__(self) -> None:
            self.x = 1

        @cached_property
        def double(self) -> int:
            return 2 * self.x

    with pytest.raises(TypeError, match="no __dict__"):
        _ = Slotted().double


def test_a_value_placed_in_the_dict_first_is_the_one_read() -> None:
    """Decoders store ``encoded`` before the first read (no re-encoding); it must win."""
    tx = Transaction("c", "clearance", "noop", {}, b"k" * 32, 1, b"s" * 64)
    tx.__dict__["encoded"] = b"as received"
    assert tx.encoded == b"as received"
