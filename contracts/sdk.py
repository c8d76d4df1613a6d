"""The small SDK every contract is written against.

A contract is pure and deterministic: it sees the world only through the :class:`Context`
the node hands it (block height and time, the signer's organisation and roles, a namespaced
state view, an event sink, a signature checker) and answers with state writes, events or a
:class:`ContractError`. No wall clock, randomness, network or disk, so that every honest
node that applies the same block computes byte-identical state.

The interface is ABCI-shaped (DESIGN.md section 7):

* ``check(call)``: stateless checks (schema, sizes, formats) run at mempool admission;
* ``apply(ctx, call)``: the state transition; raising :class:`ContractError` aborts every
  write the call made, and the failure code is recorded in the receipt;
* ``query(ctx, name, args)``: read-only answers for the HTTP API and the web page.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# Stable error codes shared by every contract. Contract-specific codes live in the contract.
E_UNKNOWN_ACTION = "E_UNKNOWN_ACTION"
E_UNKNOWN_QUERY = "E_UNKNOWN_QUERY"
E_ARGS = "E_ARGS"
E_ROLE = "E_ROLE"
E_STATE = "E_STATE"
E_NOT_FOUND = "E_NOT_FOUND"
E_EXISTS = "E_EXISTS"
E_FORBIDDEN = "E_FORBIDDEN"
E_UNKNOWN_SIGNER = "E_UNKNOWN_SIGNER"


Report = tuple[str, Mapping[str, Any], tuple[str, ...]]
"""An event a refusal carries: ``(type, attrs, keys)`` (see :class:`ContractError`)."""


class ContractError(Exception):
    """A rejection with a stable, machine-readable code (``E_ROLE``, ``E_STATE``...).

    Raised by ``check``/``apply``/``query``; the node records ``code`` and ``message`` in the
    receipt (apply) or returns them as HTTP 4xx (check, query).

    ``reports``: events the refusal itself must publish (raised from ``apply`` only). A
    refused call's writes and emitted events are all dropped, yet some refusals are exactly
    what a subscriber must hear of: a slaughter refused because a drug withdrawal period is
    still running is a violation the regulator's node acts on, and a receipt code alone does
    not reach its event stream. These become the failed receipt's events (in the
    contract's own namespace), so every node records and streams them identically.
    """

    def __init__(self, code: str, message: str, *, reports: tuple[Report, ...] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reports = reports


class StateView(Protocol):
    """Key/value access to one contract's namespace; values are canonical Python objects.

    Keys are strings; ``scan`` yields ``(key, value)`` in ascending key order, so iteration is
    deterministic. The node supplies an implementation backed by LevelDB plus overlays.
    """

    def get(self, key: str) -> Any | None: ...

    def put(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]: ...


class StateReader(Protocol):
    """Read-only access to another contract's namespace (e.g. membership lookups)."""

    def get(self, key: str) -> Any | None: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]: ...


SignatureChecker = Callable[[bytes, str, Any, bytes], bool]
"""``checker(pubkey, tag, body, signature)``: domain-tagged Ed25519 check on this chain."""


@dataclass(frozen=True)
class Member:
    """A registered key: a person or system of an organisation, a node, or an IoT device."""

    pubkey: bytes
    org: str
    roles: tuple[str, ...]
    kind: str  # "member" | "device" | "node"
    revoked: bool = False
    label: str = ""

    def has_role(self, *roles: str) -> bool:
        # A plain loop, not any(<generator>) (four times faster): every call of every contract
        # checks a role.
        for role in roles:  # noqa: SIM110
            if role in self.roles:
                return True
        return False


@dataclass(frozen=True, init=False)
class Call:
    """What a transaction asks a contract to do, as the contract sees it."""

    contract: str
    action: str
    args: Mapping[str, Any]
    signer: bytes
    nonce: int
    tx_hash: bytes

    def __init__(self, contract: str, action: str, args: Mapping[str, Any], signer: bytes,
                 nonce: int, tx_hash: bytes) -> None:
        # Frozen all the same; fields are set through __dict__ because the generated frozen
        # init calls object.__setattr__ per field, twice the cost, and a node builds one or
        # two Calls and several Events per transaction (docs/benchmarks.md, twelfth round).
        self.__dict__.update(contract=contract, action=action, args=args, signer=signer,
                             nonce=nonce, tx_hash=tx_hash)


@dataclass(frozen=True, init=False)
class Event:
    """Something that happened, for subscribers (event stream, regulator reports).

    ``keys`` are the identifiers a subscriber may filter on (order id, waybill, animal id).
    """

    contract: str
    type: str
    attrs: Mapping[str, Any]
    keys: tuple[str, ...] = ()

    def __init__(self, contract: str, type: str, attrs: Mapping[str, Any],
                 keys: tuple[str, ...] = ()) -> None:
        self.__dict__.update(contract=contract, type=type, attrs=attrs, keys=keys)  # as Call

    def to_obj(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "type": self.type,
            "attrs": dict(self.attrs),
            "keys": list(self.keys),
        }


MemberLookup = Callable[[bytes], "Member | None"]
"""Resolve a public key to its membership record (None when unknown)."""


@dataclass
class Context:
    """Everything a contract may touch while applying one call.

    ``time_ms`` is the block's time (milliseconds since the Unix epoch, agreed by
    consensus): the only clock a contract has.
    """

    contract: str
    chain_id: str
    height: int
    time_ms: int
    signer: Member
    state: StateView
    lookup_member: MemberLookup
    check_signature: SignatureChecker
    read_other: Callable[[str], StateReader]
    events: list[Event] = field(default_factory=list)

    def emit(self, type_: str, attrs: Mapping[str, Any], keys: tuple[str, ...] = ()) -> None:
        """Record an event; it is kept only if the call succeeds."""
        self.events.append(Event(self.contract, type_, dict(attrs), tuple(keys)))

    def require_role(self, *roles: str) -> None:
        """Refuse the call unless the signer's organisation holds one of ``roles``."""
        if not self.signer.has_role(*roles):
            raise ContractError(
                E_ROLE, f"{self.contract} action needs role {' or '.join(roles)}"
            )


@dataclass
class QueryContext:
    """What a query sees: read-only state, the chain's height/time, and the caller if known.

    ``caller`` is set only when the HTTP request was signed by a member key (DESIGN.md
    section 6); queries over private records refuse ``None`` or the wrong role.
    """

    contract: str
    chain_id: str
    height: int
    time_ms: int
    state: StateReader
    caller: Member | None
    lookup_member: MemberLookup
    read_other: Callable[[str], StateReader]


class Contract(ABC):
    """Base class of every contract module (system or third-party).

    Subclasses set ``name`` and ``version`` and implement the three entry points. They are
    found by the node through the ``jangbu.contracts`` entry-point group.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"

    @classmethod
    def for_version(cls, version: str) -> Contract | None:
        """An instance that runs the rules of ``version`` (what a chain's genesis names), or
        None when this build does not have them.

        Why: a contract's rules decide the state, and so the state root, of a history; a
        chain keeps the version it started with. A contract that changes its rules may keep
        the older ones runnable (override this) so chains begun under them still run on a
        newer build; ``version`` stays the newest, the one a new genesis names.
        """
        return cls() if version == str(cls.version) else None

    @abstractmethod
    def check(self, call: Call) -> None:
        """Stateless validation; raise ContractError to refuse admission."""

    @abstractmethod
    def apply(self, ctx: Context, call: Call) -> None:
        """Apply the call to state through ``ctx``; raise ContractError to reject it."""

    def query(self, ctx: QueryContext, name: str, args: Mapping[str, Any]) -> Any:
        """Answer a read-only query; the default knows none."""
        raise ContractError(E_UNKNOWN_QUERY, f"{self.name} has no query {name!r}")


# --- small argument helpers shared by contracts -------------------------------------------


def arg_str(
    args: Mapping[str, Any],
    name: str,
    *,
    pattern: re.Pattern[str] | None = None,
    max_len: int = 256,
    optional: bool = False,
    code: str = E_ARGS,
) -> str:
    """Fetch a string argument, checking type, length and (optionally) a regex.

    A format mismatch raises ``code`` (e.g. ``E_INVALID_HS``) so each identifier keeps its own
    stable error code.

    Every argument of every transaction passes through here (twice: admission and
    execution), so a well-formed exact ``str`` returns after one test; anything else takes
    the full path below, which alone decides which error is raised.
    """
    value = args.get(name)
    if (type(value) is str and len(value) <= max_len
            and (pattern is None or pattern.fullmatch(value) is not None)):
        return value
    if value is None:
        if optional:
            return ""
        raise ContractError(E_ARGS, f"missing argument {name!r}")
    if not isinstance(value, str):
        raise ContractError(E_ARGS, f"argument {name!r} must be a string")
    if len(value) > max_len:
        raise ContractError(E_ARGS, f"argument {name!r} longer than {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise ContractError(code, f"argument {name!r} has an invalid format: {value!r}")
    return value


def arg_int(
    args: Mapping[str, Any],
    name: str,
    *,
    minimum: int = 0,
    maximum: int = 2**62,
    optional: bool = False,
    default: int = 0,
) -> int:
    """Fetch an integer argument within ``[minimum, maximum]`` (bools are refused).

    An exact ``int`` in range returns at once (``type(True) is bool``, so bools never take
    this path); anything else takes the full checks below.
    """
    value = args.get(name)
    if type(value) is int and minimum <= value <= maximum:
        return value
    if value is None:
        if optional:
            return default
        raise ContractError(E_ARGS, f"missing argument {name!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(E_ARGS, f"argument {name!r} must be an integer")
    if value < minimum or value > maximum:
        raise ContractError(E_ARGS, f"argument {name!r} must be in [{minimum}, {maximum}]")
    return value


def arg_list(args: Mapping[str, Any], name: str, *, max_items: int = 256) -> list[Any]:
    """Fetch a non-empty list argument of at most ``max_items`` items."""
    value = args.get(name)
    if not isinstance(value, list) or not value:
        raise ContractError(E_ARGS, f"argument {name!r} must be a non-empty list")
    if len(value) > max_items:
        raise ContractError(E_ARGS, f"argument {name!r} has more than {max_items} items")
    return value


def arg_map(args: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Fetch a map argument."""
    value = args.get(name)
    if type(value) is not dict and not isinstance(value, Mapping):  # dict: no ABC check
        raise ContractError(E_ARGS, f"argument {name!r} must be a map")
    return value
