"""The mempool: signed transactions waiting for a block.

Rules (DESIGN.md section 6):

* bounded by count and by bytes; when full, admission fails with :class:`MempoolFull` (the
  API answers 503 with a retry hint): a transaction answered "accepted" is never dropped
  silently, it stays until committed or until it can no longer be valid;
* the signature is checked once at admission (the shared :class:`SignatureCache` spares
  the proposal path a second check);
* duplicates and already-committed hashes are refused;
* fair across signers: blocks are filled round-robin over per-signer FIFO queues, so one
  busy integrator cannot starve the others.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from contracts.sdk import Call, Contract, ContractError, Member
from node.engine import SignatureCache
from node.tx import Transaction, TxError

E_DUPLICATE = "E_DUPLICATE"
E_COMMITTED = "E_ALREADY_COMMITTED"
E_MEMPOOL_FULL = "E_MEMPOOL_FULL"
E_UNKNOWN_CONTRACT = "E_UNKNOWN_CONTRACT"


class AdmissionError(ValueError):
    """The transaction is refused for good (bad envelope, signature, check, replay)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class MempoolFull(AdmissionError):  # noqa: N818 - reads as the condition it names
    """Temporarily refused: the pool is at its count or byte limit. Retry later."""


@dataclass(frozen=True)
class MempoolLimits:
    max_txs: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    org_share: float = 1.0
    """The part of both limits one organisation's transactions may take (its member keys
    together). A network of several organisations uses half (``for_orgs``): one Byzantine
    validator's organisation filled every honest mempool with valid transactions signed by
    its own keys, and 120 of 300 honest submits were refused ``E_MEMPOOL_FULL`` (review)."""

    @classmethod
    def for_orgs(cls, max_txs: int, max_bytes: int, orgs: int) -> MempoolLimits:
        return cls(max_txs, max_bytes, 0.5 if orgs >= 2 else 1.0)


class Mempool:
    def __init__(
        self,
        *,
        chain_id: str,
        contracts: Mapping[str, Contract],
        is_committed: Callable[[bytes], bool],
        lookup_member: Callable[[bytes], Member | None],
        sig_cache: SignatureCache,
        limits: MempoolLimits | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.contracts = contracts
        self.is_committed = is_committed
        self.lookup_member = lookup_member
        self.sig_cache = sig_cache
        self.limits = limits or MempoolLimits()
        self._txs: dict[bytes, Transaction] = {}
        # Per signer, its entries (admission number, hash) in arrival order. An entry is
        # live while ``_admitted[hash]`` is its number: removed (committed) transactions
        # leave stale entries behind, dropped at the front of the queue or, once they are
        # the majority of it, all at once (``_stale`` counts them). Numbering the entries
        # keeps a hash removed and admitted again from being reaped at its old place too.
        self._by_signer: OrderedDict[bytes, deque[tuple[int, bytes]]] = OrderedDict()
        self._admitted: dict[bytes, int] = {}
        self._stale: dict[bytes, int] = {}
        self._admissions = 0
        self._bytes = 0
        # Per organisation, its pending transactions' count and bytes (``org_share``).
        self._org_of: dict[bytes, str] = {}
        self._org_txs: dict[str, int] = {}
        self._org_bytes: dict[str, int] = {}
        self.admitted_total = 0
        self.rejected_total: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self._txs.get(tx_hash)

    def _reject(self, code: str, message: str, full: bool = False) -> AdmissionError:
        self.rejected_total[code] = self.rejected_total.get(code, 0) + 1
        return (MempoolFull if full else AdmissionError)(code, message)

    def add(self, tx: Transaction) -> None:
        """Admit ``tx`` or raise AdmissionError/MempoolFull with a stable code."""
        try:
            tx.decode_fields()  # one cut from a synced block has its shape checked now
        except TxError as exc:
            raise self._reject(exc.code, exc.message) from None
        if tx.hash in self._txs:
            raise self._reject(E_DUPLICATE, "transaction is already pending")
        if self.is_committed(tx.hash):
            raise self._reject(E_COMMITTED, "transaction is already committed")
        size = len(tx.encoded)
        if len(self._txs) >= self.limits.max_txs or self._bytes + size > self.limits.max_bytes:
            raise self._reject(E_MEMPOOL_FULL, "mempool is full; retry later", full=True)
        # Cheap checks first: a stranger's junk must not cost every node a signature check.
        contract = self.contracts.get(tx.contract)
        if contract is None:
            raise self._reject(E_UNKNOWN_CONTRACT, f"contract {tx.contract!r} is not enabled")
        member = self.lookup_member(tx.signer)
        if member is None or member.revoked:
            code = "E_UNKNOWN_SIGNER" if member is None else "E_REVOKED_SIGNER"
            raise self._reject(code, "signer is not an active member key")
        org = member.org
        share = self.limits.org_share
        if share < 1.0 and (
                self._org_txs.get(org, 0) >= self.limits.max_txs * share
                or self._org_bytes.get(org, 0) + size > self.limits.max_bytes * share):
            raise self._reject(E_MEMPOOL_FULL, f"organisation {org!r} holds its share of the "
                               "mempool; retry later", full=True)
        try:
            self.sig_cache.check(tx, self.chain_id)
        except TxError as exc:
            raise self._reject(exc.code, exc.message) from None
        try:
            contract.check(Call(tx.contract, tx.action, tx.args, tx.signer, tx.nonce, tx.hash))
        except ContractError as exc:
            raise self._reject(exc.code, exc.message) from None
        self._txs[tx.hash] = tx
        self._admissions += 1
        self._admitted[tx.hash] = self._admissions
        self._by_signer.setdefault(tx.signer, deque()).append((self._admissions, tx.hash))
        self._bytes += size
        self._org_of[tx.hash] = org
        self._org_txs[org] = self._org_txs.get(org, 0) + 1
        self._org_bytes[org] = self._org_bytes.get(org, 0) + size
        self.admitted_total += 1

    def reap(self, max_txs: int, max_bytes: int) -> list[Transaction]:
        """Up to the limits, round-robin across signers, each signer's in arrival order.

        Nothing is removed: a proposal may fail to commit; ``remove`` runs on commit.
        """
        chosen: list[Transaction] = []
        size = 0
        txs = self._txs
        admitted = self._admitted
        # Each queue is walked in place (no copy: a deep pool made every proposal copy
        # every pending hash); stale entries left by ``remove`` are skipped.
        cursors = {signer: iter(queue) for signer, queue in self._by_signer.items()}
        while cursors and len(chosen) < max_txs:
            for signer in list(cursors):
                entry = next(cursors[signer], None)
                while entry is not None and admitted.get(entry[1]) != entry[0]:
                    entry = next(cursors[signer], None)
                if entry is None:
                    del cursors[signer]
                    continue
                tx = txs[entry[1]]
                if size + len(tx.encoded) > max_bytes:
                    return chosen
                chosen.append(tx)
                size += len(tx.encoded)
                if len(chosen) >= max_txs:
                    break
        return chosen

    def remove(self, tx_hashes: Iterable[bytes]) -> None:
        """Forget committed transactions.

        Their entries leave a signer's queue when they reach its front (committed
        transactions are mostly the oldest, since blocks are filled from the front), or all
        at once when stale entries outnumber live ones (a front transaction that stays
        pending must not pin an ever longer tail). Rebuilding each touched queue at every
        commit instead walked every pending hash of the signer.
        """
        touched: set[bytes] = set()
        for tx_hash in tx_hashes:
            tx = self._txs.pop(tx_hash, None)
            if tx is None:
                continue
            del self._admitted[tx_hash]
            self._bytes -= len(tx.encoded)
            org = self._org_of.pop(tx_hash)
            self._org_txs[org] -= 1
            self._org_bytes[org] -= len(tx.encoded)
            self._stale[tx.signer] = self._stale.get(tx.signer, 0) + 1
            touched.add(tx.signer)
        admitted = self._admitted
        for signer in touched:
            queue = self._by_signer[signer]
            stale = self._stale[signer]
            while queue and admitted.get(queue[0][1]) != queue[0][0]:
                queue.popleft()
                stale -= 1
            if stale * 2 > len(queue):
                queue = deque(entry for entry in queue if admitted.get(entry[1]) == entry[0])
                self._by_signer[signer] = queue
                stale = 0
            if queue:
                self._stale[signer] = stale
            else:
                del self._by_signer[signer]
                self._stale.pop(signer, None)
