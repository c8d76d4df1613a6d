"""Every state of an animal, carcass and lot, and every legal transition, on one screen.

Everything that moves a record from one state to another goes through :func:`next_state`;
the contract never writes a ``state`` field any other way. A transition missing from
:data:`TRANSITIONS` is refused with ``E_STATE`` (or ``E_RECALLED`` when the record has been
recalled, so a shop sees *why* it cannot sell).

Animals (one per cattle individual number):

* ``alive``       registered on its farm (birth, or confirmed transfer in)
* ``in_transit``  shipped by one farm, not yet confirmed by the receiving farm
* ``arrived``     delivered to a slaughterhouse (arrival recorded)
* ``dead``        died on the farm or in transport (terminal)
* ``slaughtered`` turned into a carcass (terminal)

An animal's ``recalled`` flag is separate from its state: a live animal can be recalled (it
may then not be slaughtered).

Carcasses (one per cattle, or one per pig shipment batch):

* ``passed``   inspection passed, may be cut
* ``failed``   inspection failed (residue, BSE, inspector): blocks every lot (terminal)
* ``cut``      at least one cut recorded; more cuts allowed while weight remains
* ``recalled`` recalled by the regulator (terminal)

Lots (bundle numbers):

* ``packed``   cut or bundled by a packer, not yet at a shop
* ``bundled``  consumed as an input of a bigger lot (terminal for this number)
* ``at_shop``  received by a shop, on sale
* ``sold_out`` every gram sold (terminal)
* ``recalled`` recalled by the regulator (terminal)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from contracts.sdk import E_STATE, ContractError

E_RECALLED: Final = "E_RECALLED"

ANIMAL: Final = "animal"
CARCASS: Final = "carcass"
LOT: Final = "lot"

# (kind, action) -> {from state: to state}
TRANSITIONS: Final[Mapping[tuple[str, str], Mapping[str, str]]] = {
    (ANIMAL, "register_birth"): {"": "alive"},
    (ANIMAL, "transfer_out"): {"alive": "in_transit"},
    (ANIMAL, "transfer_in"): {"in_transit": "alive"},
    (ANIMAL, "transfer_refused"): {"in_transit": "alive"},  # receiver declined: back home
    (ANIMAL, "treat"): {"alive": "alive"},
    (ANIMAL, "reading"): {"alive": "alive", "in_transit": "in_transit", "arrived": "arrived"},
    (ANIMAL, "arrival"): {"alive": "arrived"},
    (ANIMAL, "death"): {"alive": "dead", "in_transit": "dead", "arrived": "dead"},
    (ANIMAL, "slaughter"): {"alive": "slaughtered", "arrived": "slaughtered"},
    (CARCASS, "slaughter_passed"): {"": "passed"},
    (CARCASS, "slaughter_failed"): {"": "failed"},
    (CARCASS, "cut"): {"passed": "cut", "cut": "cut"},
    (CARCASS, "recall"): {"passed": "recalled", "cut": "recalled", "failed": "recalled"},
    (LOT, "create"): {"": "packed"},
    (LOT, "bundle"): {"packed": "bundled"},
    (LOT, "receive"): {"packed": "at_shop"},
    (LOT, "sell"): {"at_shop": "at_shop"},
    (LOT, "sell_last"): {"at_shop": "sold_out"},
    (LOT, "recall"): {
        "packed": "recalled",
        "bundled": "recalled",
        "at_shop": "recalled",
        "sold_out": "recalled",
    },
}

STATES: Final[Mapping[str, frozenset[str]]] = {
    kind: frozenset(
        state
        for (k, _), moves in TRANSITIONS.items()
        if k == kind
        for pair in moves.items()
        for state in pair
        if state
    )
    for kind in (ANIMAL, CARCASS, LOT)
}
"""Every state each kind of record can be in (derived from the table)."""

TERMINAL: Final[Mapping[str, frozenset[str]]] = {
    kind: frozenset(
        state
        for state in STATES[kind]
        if not any(state in moves for (k, _), moves in TRANSITIONS.items() if k == kind)
    )
    for kind in (ANIMAL, CARCASS, LOT)
}


def is_allowed(kind: str, action: str, state: str) -> bool:
    return state in TRANSITIONS.get((kind, action), {})


def next_state(kind: str, action: str, state: str, *, recalled: bool = False) -> str:
    """The state after ``action``, or a ContractError naming why it is not allowed."""
    moves = TRANSITIONS[(kind, action)]
    if state in moves and not (recalled and action != "recall"):
        return moves[state]
    if recalled or state == "recalled":
        raise ContractError(E_RECALLED, f"{kind} has been recalled; {action} is not allowed")
    raise ContractError(E_STATE, f"{kind} in state {state!r} does not allow {action}")
