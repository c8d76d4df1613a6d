"""Running contract calls against layered state, one call or one whole block.

``execute_call`` is the single place where a call meets a contract: it resolves the signer
through membership, builds the :class:`~contracts.sdk.Context`, runs ``apply`` on a
transaction overlay and keeps the writes and events only when the contract succeeds. The
outcome is a :class:`Receipt` either way, so every node records the same failure code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensus import canonical
from consensus.cached import cached_property
from contracts import membership
from contracts.sdk import (
    E_UNKNOWN_SIGNER,
    Call,
    Context,
    Contract,
    ContractError,
    Event,
    Member,
    QueryContext,
    StateReader,
)
from node.state import ContractState, KVReader, Overlay, state_key

OK = "OK"
E_UNKNOWN_CONTRACT = "E_UNKNOWN_CONTRACT"
E_REVOKED_SIGNER = "E_REVOKED_SIGNER"
E_INTERNAL = "E_CONTRACT_FAILURE"
E_UNREADABLE_RECEIPT = "E_UNREADABLE_RECEIPT"

TAG_TX = "jangbu/tx/v1"
TAG_DEVICE = "jangbu/device/v1"


@dataclass(frozen=True, init=False)
class Receipt:
    """The outcome of one transaction: ``code`` is ``"OK"`` or a stable error code."""

    code: str
    message: str = ""
    events: tuple[Event, ...] = ()

    def __init__(self, code: str, message: str = "", events: tuple[Event, ...] = ()) -> None:
        # Frozen all the same; set through __dict__ as contracts.sdk.Call explains.
        self.__dict__.update(code=code, message=message, events=events)

    @property
    def ok(self) -> bool:
        return self.code == OK

    def to_obj(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "events": [event.to_obj() for event in self.events],
        }

    @cached_property
    def encoded(self) -> bytes:
        """Canonical bytes, computed once: they are both hashed (results root) and stored.

        Checked one level deep, as they sit in their results leaf ``{tx, receipt}``.
        """
        return canonical.encode(self.to_obj(), depth=1)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Receipt:
        return cls(
            code=str(obj["code"]),
            message=str(obj["message"]),
            events=tuple(
                Event(e["contract"], e["type"], e["attrs"], tuple(e["keys"])) for e in obj["events"]
            ),
        )


class EncodedReceipts(Sequence[Receipt]):
    """A block's receipts held as their canonical bytes, each decoded when first read.

    Why: a block taken from a peer's diff (catch-up) needs its receipts' bytes only, to
    store them; decoding all of them was ~16% of a catch-up's CPU, for events that only
    an event-stream subscriber or a waiting client ever reads. The bytes are certified
    (their results leaves gave the header's ``results_root``), so they are exactly what
    an honest node encoded, and they decode. Only a quorum of Byzantine validators (beyond
    the fault model) could certify bytes that do not: those read as an
    ``E_UNREADABLE_RECEIPT`` receipt rather than stopping the node after the commit.
    """

    def __init__(self, encoded: Sequence[bytes]) -> None:
        self.encoded: tuple[bytes, ...] = tuple(encoded)
        self._decoded: dict[int, Receipt] = {}

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self.encoded))[index]  # negative indexes; IndexError past the end
        receipt = self._decoded.get(index)
        if receipt is None:
            raw = self.encoded[index]
            try:
                receipt = Receipt.from_obj(canonical.decode_trusted(raw))
            except Exception:  # certified by a Byzantine quorum: never crash on it
                receipt = Receipt(E_UNREADABLE_RECEIPT,
                                  "the certified receipt bytes do not decode")
            receipt.__dict__["encoded"] = raw  # the very bytes: no re-encoding
            self._decoded[index] = receipt
        return receipt

    def __iter__(self) -> Iterator[Receipt]:
        return (self[i] for i in range(len(self.encoded)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable cache inside: not hashable


def encoded_receipts(receipts: Sequence[Receipt] | Sequence[bytes]) -> Sequence[bytes]:
    """The canonical bytes of ``receipts`` (objects, or bytes already), without decoding an
    :class:`EncodedReceipts`."""
    if isinstance(receipts, EncodedReceipts):
        return receipts.encoded
    return [raw if isinstance(raw, bytes) else raw.encoded for raw in receipts]


def make_signature_checker(chain_id: str) -> Any:
    """The ``check_signature`` a Context gets: domain-tagged Ed25519 on this chain."""

    def check(pubkey: bytes, tag: str, body: Any, signature: bytes) -> bool:
        return canonical.verify(pubkey, tag, chain_id, body, signature)

    return check


def member_lookup(source: KVReader) -> Any:
    """A ``lookup_member`` function reading membership state from ``source``."""
    reader = ContractState(source, membership.NAME)

    def lookup(pubkey: bytes) -> Member | None:
        return membership.lookup_member(reader, pubkey)

    return lookup


def committed_member_lookup(source: KVReader, version: Callable[[], int],
                            capacity: int = 10_000) -> Callable[[bytes], Member | None]:
    """``member_lookup`` over committed state, remembered until ``version()`` changes.

    Mempool admission looks up the signer of every gossiped transaction; membership only
    changes when a block commits, so the answers of one height (the store's height is the
    version) are reused. Bounded: past ``capacity`` keys, lookups go to the store.
    """
    lookup = member_lookup(source)
    cache: dict[bytes, Member | None] = {}
    seen = [version()]

    def cached(pubkey: bytes) -> Member | None:
        current = version()
        if current != seen[0]:
            cache.clear()
            seen[0] = current
        if pubkey in cache:
            return cache[pubkey]
        member: Member | None = lookup(pubkey)
        if len(cache) < capacity:
            cache[pubkey] = member
        return member

    return cached


MEMBERSHIP_PREFIX = state_key(membership.NAME, "")

MemberLookup = Callable[[bytes], Member | None]


def block_member_lookup(block: Overlay, committed: MemberLookup) -> MemberLookup:
    """Member lookups for the calls of one block being executed on ``block``.

    ``block`` is an overlay of committed state and ``committed`` answers for exactly that
    state (``committed_member_lookup`` over the same store, remembered per height). Its
    answers are used until the block itself writes membership state; from then on the
    lookups read through the block, as :func:`member_lookup` does, so a key added or
    revoked earlier in the block counts at once. Every call looks up its signer, and
    reading, decoding and building its record each time was ~3.5% of a node's CPU under
    load, for answers that change only when a membership call runs.
    """
    direct = member_lookup(block)

    def lookup(pubkey: bytes) -> Member | None:
        if type(pubkey) is not bytes or block.wrote_under(MEMBERSHIP_PREFIX):
            member: Member | None = direct(pubkey)
            return member
        return committed(pubkey)

    return lookup


def reader_factory(source: KVReader) -> Any:
    def read_other(contract: str) -> StateReader:
        return ContractState(source, contract)

    return read_other


def execute_call(
    contracts: Mapping[str, Contract],
    block: Overlay,
    *,
    chain_id: str,
    height: int,
    time_ms: int,
    call: Call,
    prechecked: bool = False,
    lookup_member: MemberLookup | None = None,
) -> Receipt:
    """Apply ``call`` on top of ``block``; merge its writes only if the contract succeeds.

    ``prechecked`` skips the contract's stateless ``check``: pass it only when this node
    already ran that same check on this very transaction (its mempool admitted it), since
    check is deterministic the receipt cannot differ. ``lookup_member`` must answer as
    ``member_lookup(block)`` does (:func:`block_member_lookup`); None builds that one.
    """
    contract = contracts.get(call.contract)
    if contract is None:
        return Receipt(E_UNKNOWN_CONTRACT, f"contract {call.contract!r} is not enabled")
    lookup = member_lookup(block) if lookup_member is None else lookup_member
    signer = lookup(call.signer)
    if signer is None:
        return Receipt(E_UNKNOWN_SIGNER, "signer is not a registered member key")
    if signer.revoked:
        return Receipt(E_REVOKED_SIGNER, "signer key has been revoked")
    tx_overlay = Overlay(block)
    ctx = Context(
        contract=call.contract,
        chain_id=chain_id,
        height=height,
        time_ms=time_ms,
        signer=signer,
        state=ContractState(tx_overlay, call.contract),
        lookup_member=lookup,
        check_signature=make_signature_checker(chain_id),
        read_other=reader_factory(tx_overlay),
    )
    try:
        if not prechecked:
            contract.check(call)
        contract.apply(ctx, call)
    except ContractError as exc:
        return refusal_receipt(call.contract, exc)
    except canonical.CanonicalError as exc:
        return Receipt(exc.code, str(exc))
    receipt = Receipt(OK, "", tuple(ctx.events))
    try:
        _ = receipt.encoded  # events a contract emitted that cannot be recorded fail the call
    except canonical.CanonicalError as exc:
        return Receipt(exc.code, f"events cannot be recorded: {exc}")
    tx_overlay.merge_into(block)
    return receipt


def refusal_receipt(contract: str, exc: ContractError) -> Receipt:
    """The receipt of a refused call: its code and message, and the events the refusal
    reports (:class:`ContractError`), named for the refusing contract whatever it claims.
    Reports that cannot be recorded are dropped; the refusal itself still stands."""
    if not exc.reports:
        return Receipt(exc.code, exc.message)
    try:
        events = tuple(Event(contract, str(type_), dict(attrs), tuple(keys))
                       for type_, attrs, keys in exc.reports)
        receipt = Receipt(exc.code, exc.message, events)
        _ = receipt.encoded
    except (canonical.CanonicalError, TypeError, ValueError):
        return Receipt(exc.code, exc.message)
    return receipt


def run_query(
    contracts: Mapping[str, Contract],
    source: KVReader,
    *,
    chain_id: str,
    height: int,
    time_ms: int,
    contract_name: str,
    name: str,
    args: Mapping[str, Any],
    caller: Member | None,
) -> Any:
    """Answer a read-only contract query (raises ContractError on refusal)."""
    contract = contracts.get(contract_name)
    if contract is None:
        raise ContractError(E_UNKNOWN_CONTRACT, f"contract {contract_name!r} is not enabled")
    ctx = QueryContext(
        contract=contract_name,
        chain_id=chain_id,
        height=height,
        time_ms=time_ms,
        state=ContractState(source, contract_name),
        caller=caller,
        lookup_member=member_lookup(source),
        read_other=reader_factory(source),
    )
    return contract.query(ctx, name, args)
