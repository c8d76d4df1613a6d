"""The buyer's personal data: what clients compute before it reaches the ledger.

The ledger never sees a PCCC (personal customs clearance code) in the clear. A client
(the buyer platform, or the seller's integration on its behalf) sends two things:

* ``buyer_ref`` = hex SHA-256(``salt`` || PCCC as ASCII): a stable reference the contract
  matches on (a buyer's parcels, combined taxation). ``salt`` is a secret of at least 16
  bytes agreed per buyer platform with customs, and never put on the ledger: a PCCC has only
  10^12 values, so the hash is only as private as the salt is secret.
* ``buyer_sealed`` = base64 of a libsodium ``SealedBox`` to customs' public key over
  :func:`buyer_payload` (PCCC, name, address). Only customs can open it.

These helpers are pure; sealing itself (pynacl) happens in the client.
"""

from __future__ import annotations

import hashlib
import json

from contracts.clearance.rules import E_INVALID_PCCC, PCCC
from contracts.sdk import E_ARGS, ContractError

MIN_SALT_BYTES = 16


def is_valid_pccc(pccc: str) -> bool:
    """True when ``pccc`` has the format ``P`` + 12 digits."""
    return PCCC.fullmatch(pccc) is not None


def require_pccc(pccc: str) -> None:
    """Refuse a malformed PCCC with ``E_INVALID_PCCC``."""
    if not is_valid_pccc(pccc):
        raise ContractError(E_INVALID_PCCC, "a PCCC is 'P' followed by 12 digits")


def buyer_ref(salt: bytes, pccc: str) -> str:
    """The salted reference of a buyer: hex SHA-256(salt || PCCC)."""
    if len(salt) < MIN_SALT_BYTES:
        raise ContractError(E_ARGS, f"the salt must be at least {MIN_SALT_BYTES} bytes")
    require_pccc(pccc)
    return hashlib.sha256(salt + pccc.encode("ascii")).hexdigest()


def buyer_payload(pccc: str, name: str, address: str) -> bytes:
    """The plaintext a client seals to customs: canonical JSON (sorted keys, UTF-8)."""
    require_pccc(pccc)
    if not name or not address:
        raise ContractError(E_ARGS, "name and address are required")
    body = {"address": address, "name": name, "pccc": pccc}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
