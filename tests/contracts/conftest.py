"""Fixtures for contract tests; the ledger harness itself lives in contract_harness.py.

(The harness is a plain module so test files import it by a name no other test folder uses:
several folders have a ``conftest`` and the names would collide when run together.)
"""

from __future__ import annotations

from contract_harness import ledger_factory  # noqa: F401  (re-exported fixture)
