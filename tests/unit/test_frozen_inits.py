"""The hand-written inits of the per-transaction dataclasses keep their dataclass contract.

Transaction, Call, Event and Receipt set their fields through ``__dict__`` (half the cost
of the generated frozen init, paid several times per transaction on every node). A field
added to one of them must be added to its init too, and they must stay frozen: the
transaction's hash and encoding are cached on the assumption that its fields never change.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from contracts.sdk import Call, Event
from node.execution import Receipt
from node.tx import Transaction

EXAMPLES = {
    Transaction: ("chain", "clearance", "create_order", {"a": 1}, b"k" * 32, 7, b"s" * 64),
    Call: ("clearance", "create_order", {"a": 1}, b"k" * 32, 7, b"h" * 32),
    Event: ("clearance", "create_order", {"order_id": "A"}, ("A",)),
    Receipt: ("OK", "", (Event("clearance", "x", {}),)),
}


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_the_init_takes_exactly_the_fields_with_their_defaults(cls) -> None:
    assert "__post_init__" not in vars(cls)  # the hand-written init would not call it
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
    fields = dataclasses.fields(cls)
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        expected = inspect.Parameter.empty if field.default is dataclasses.MISSING \
            else field.default
        assert field.default_factory is dataclasses.MISSING
        assert parameter.default == expected


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_instances_are_frozen_and_compare_as_dataclasses(cls) -> None:
    values = EXAMPLES[cls]
    one, two = cls(*values), cls(**{f.name: v for f, v in zip(dataclasses.fields(cls), values,
                                                                 strict=True)})
    assert one == two and dataclasses.astuple(one) == dataclasses.astuple(two)
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(one, first, "changed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(one, first)
    changed = dataclasses.replace(one, **{first: "other"})
    assert getattr(changed, first) == "other" and changed != one
    assert repr(one).startswith(f"{cls.__name__}(")


def test_defaults_apply() -> None:
    assert Event("c", "t", {}).keys == ()
    assert Receipt("OK") == Receipt("OK", "", ())
