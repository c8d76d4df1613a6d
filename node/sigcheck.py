"""Many transaction signature checks at once, on a second core when the machine has one.

Why: a node checks every transaction's signature once (~40 µs, a quarter of its CPU per
transaction). A block it has not seen transaction by transaction — every block of a
catch-up, a proposal whose transactions gossip had not brought yet — carries hundreds of
unchecked signatures. The compiled helper (``node/_sigcheck.c``) checks a whole list
without the GIL, so :func:`start` hands the list to a worker thread and the caller goes on
with the block's other checks (execution, receipts, the state tree) on its own thread,
then collects the verdicts with :meth:`Verdicts.wait` before anything is stored — and
checks what is still unchecked by then alongside the worker.

Keys that sign again and again (an organisation's keys, its devices) are checked from a
table of their multiples once three of their signatures have passed libsodium, about
twice as fast (``node/_ed25519_keyed.c``: the same equation and refusals as libsodium; it
only ever accepts, and whatever it does not accept is libsodium's to decide).
``JANGBU_KEYED_SIGCHECK=0`` turns the tables off.

Where the helper is not built, or ``JANGBU_SERIAL_SIGCHECK=1``, or for a handful of
signatures (handing them over costs more than it saves), the checks run at once on the
caller's thread through PyNaCl, as they always did. Same library, same verdicts. The
single check of admission (:func:`verify_one`) also goes through the helper when it is on,
and through PyNaCl otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import nacl._sodium as _sodium
import nacl.signing

from consensus import canonical


def _load_compiled() -> Any:
    """``node/_sigcheck.c`` if it was built (it needs only a C compiler), else None."""
    try:
        from node import _sigcheck  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _sigcheck


_compiled = _load_compiled()

MIN_BACKGROUND = 16
"""Fewer checks than this run on the caller's thread: a hand-over to the worker thread and
back costs ~0.1 ms, a little more than two checks."""

Item = tuple[bytes, bytes, bytes]  # (public key, signed message, signature)

_worker: ThreadPoolExecutor | None = None
_use_compiled = False
_bound = False  # bind() ran and the self-test passed
_keyed = False  # key tables in use (use_keyed_checks)


def _self_test() -> bool:
    """The bound check must accept a good signature and refuse a bad one, or go unused."""
    key = nacl.signing.SigningKey(b"\x07" * 32)
    message = b"jangbu sigcheck self-test"
    signature = bytes(key.sign(message).signature)
    pubkey = bytes(key.verify_key)
    bad = bytes([signature[0] ^ 1]) + signature[1:]
    return bytes(_compiled.verify_many([(pubkey, message, signature),
                                        (pubkey, message, bad)])) == b"\x01\x00"


def use_background_checks(enabled: bool = True) -> bool:
    """Turn the compiled, off-thread checks on (if built and sound) or off; True if on."""
    global _use_compiled, _bound
    _use_compiled = False
    if enabled and _compiled is not None:
        try:
            if not _bound:
                _compiled.bind(_sodium.__file__)
                _bound = _self_test()
            _use_compiled = _bound
        except (OSError, AttributeError, RuntimeError):
            _use_compiled = False
    return _use_compiled


def _keyed_self_test() -> bool:
    """With the tables on, a key's good signatures must pass from its table (the first
    three, checked by libsodium, build it) and a bad one must not: else the tables go
    unused."""
    key = nacl.signing.SigningKey(b"\x0b" * 32)
    pubkey = bytes(key.verify_key)
    items = [(pubkey, bytes([i]) * 40, bytes(key.sign(bytes([i]) * 40).signature))
             for i in range(8)]
    bad = (pubkey, items[0][1], items[1][2])
    before = _compiled.keyed_stats()["accepted"]
    verdicts = bytes(_compiled.verify_many([*items, bad]))
    return verdicts == b"\x01" * 8 + b"\x00" and _compiled.keyed_stats()["accepted"] > before


def use_keyed_checks(enabled: bool = True) -> bool:
    """Check keys seen before from their tables (if the helper is bound and its self-test
    passes), or stop (dropping every table); True if on.

    The switch is the helper's, for every thread: the node sets it once, at import, before
    any check runs (the self-test then runs with it on, and turns it off if it fails)."""
    global _keyed
    _keyed = False
    if _compiled is None or not _bound or not hasattr(_compiled, "use_keyed"):
        return False
    _keyed = bool(_compiled.use_keyed(enabled)) and _keyed_self_test()
    if not _keyed:
        _compiled.use_keyed(False)
    return _keyed


def keyed_checks() -> bool:
    """True if keys seen before are checked from their tables (the compiled helper in use
    and its tables on)."""
    return _keyed and _use_compiled


KEYED_METRICS = {
    "accepted": ("jangbu_signature_checks_from_tables_total",
                 "signatures accepted from their key's table (node/_ed25519_keyed.c)"),
    "deferred": ("jangbu_signature_checks_by_libsodium_total",
                 "signature checks left to libsodium: no table for the key yet, or not "
                 "accepted from it (a bad signature)"),
    "built": ("jangbu_signature_key_tables_built_total",
              "key tables built (from a key's third valid signature, for the keys that "
              "sign most often)"),
    "evicted": ("jangbu_signature_key_tables_evicted_total",
                "key tables given to a key that signs more often (64 are kept)"),
}
"""The key tables' counters on ``/metrics``, by their field in :func:`keyed_stats`."""


def keyed_stats() -> dict[str, int]:
    """The key tables' counters since the process started (turning the tables off keeps
    them): ``accepted`` (checks a table decided), ``deferred`` (left to libsodium),
    ``built``, ``evicted``, ``refused_keys``."""
    if _compiled is None or not hasattr(_compiled, "keyed_stats"):
        return {}
    return dict(_compiled.keyed_stats())


use_background_checks(os.environ.get("JANGBU_SERIAL_SIGCHECK", "") in ("", "0"))
use_keyed_checks(os.environ.get("JANGBU_KEYED_SIGCHECK", "") in ("", "1"))


def verify_one(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """One check on this thread: what admission pays per transaction.

    Through the compiled helper where it is bound, libsodium's detached check is called on
    the three byte strings as they are; PyNaCl's ``crypto_sign_open`` (the fallback, through
    :func:`consensus.canonical.verify_raw`) first joins signature and message into a new
    buffer and copies the opened message back out, ~1.5 µs of a ~47 µs check. Same
    libsodium function underneath (``crypto_sign_open`` calls the detached check), so the
    same verdicts.
    """
    if _use_compiled and type(message) is bytes:  # (the helper refuses keys and signatures
        # that are not bytes of their size, as verify_raw does)
        return bool(_compiled.verify_many([(pubkey, message, signature)]) == b"\x01")
    return canonical.verify_raw(pubkey, message, signature)  # and any odd message


def verify_now(items: Sequence[Item]) -> list[bool]:
    """Each item's verdict, checked on this thread."""
    if _use_compiled:
        return [bool(v) for v in _compiled.verify_many(list(items))]
    return [canonical.verify_raw(pubkey, message, sig) for pubkey, message, sig in items]


class Verdicts:
    """The verdicts of one :func:`start`, in item order."""

    def __init__(self, ready: list[bool] | None = None, batch: Any = None,
                 worker_done: Future[Any] | None = None) -> None:
        self._ready = ready
        self._batch = batch
        self._worker_done = worker_done

    @property
    def ready(self) -> bool:
        """True if the verdicts are known without waiting (checked on the caller's thread)."""
        return self._ready is not None

    def cancel(self) -> None:
        """Leave what is still unchecked unchecked: the caller will not read these verdicts
        (its block failed another check). The worker moves on to the next batch."""
        if self._batch is not None:
            self._batch.cancel()

    def wait(self) -> list[bool]:
        """The verdicts; if some are still unchecked, this thread checks them too (the
        worker and this thread share what is left, so neither idles)."""
        if self._ready is None:
            assert self._batch is not None and self._worker_done is not None
            self._batch.run()
            self._worker_done.result()
            self._ready = [bool(v) for v in self._batch.verdicts()]
            self._batch = self._worker_done = None
        return self._ready


def start(items: Sequence[Item]) -> Verdicts:
    """Begin checking ``items``: on the worker thread when that pays, else at once."""
    global _worker
    if not _use_compiled or len(items) < MIN_BACKGROUND:
        return Verdicts(ready=verify_now(items))
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jangbu-sigcheck")
    batch = _compiled.prepare(list(items))
    try:
        worker_done = _worker.submit(batch.run)
    except RuntimeError:  # the worker is gone (interpreter shutting down): check here
        return Verdicts(ready=verify_now(items))
    return Verdicts(batch=batch, worker_done=worker_done)


def background_checks() -> bool:
    """True if :func:`start` runs large batches off the caller's thread."""
    return _use_compiled


__all__ = ["KEYED_METRICS", "MIN_BACKGROUND", "Verdicts", "background_checks", "keyed_checks",
           "keyed_stats", "start", "use_background_checks", "use_keyed_checks", "verify_now",
           "verify_one"]
