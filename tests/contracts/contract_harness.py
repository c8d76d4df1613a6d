"""A real, in-process ledger for contract tests: real membership, real overlays, real engine.

No mocks: calls go through ``node.execution.execute_call`` exactly as block execution does,
over a ``MemoryKV`` base, with real Ed25519 keys per organisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from nacl.signing import SigningKey

from consensus import canonical
from contracts import membership
from contracts.sdk import Call, Contract, Member
from node.execution import Receipt, execute_call, run_query
from node.state import ContractState, MemoryKV, Overlay

CHAIN_ID = "test-chain"
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class Ledger:
    """Applies calls block by block (one call = one block unless batched) over real state."""

    contracts: dict[str, Contract]
    base: MemoryKV = field(default_factory=MemoryKV)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    height: int = 0
    time_ms: int = T0
    receipts: list[Receipt] = field(default_factory=list)

    def add_org(
        self, org_id: str, roles: Iterable[str], business_ids: Iterable[str] = ()
    ) -> SigningKey:
        """Seed an organisation with one admin key (named ``org_id``) straight into state."""
        key = SigningKey(bytes(canonical.digest(org_id.encode()))[:32])
        self.keys[org_id] = key
        roles = sorted(roles)
        entries = membership.seed_records(
            [
                {
                    "id": org_id,
                    "name": org_id,
                    "roles": roles,
                    "business_ids": list(business_ids),
                    "keys": [{"pubkey": key.verify_key.encode().hex(), "roles": [*roles, "admin"]}],
                }
            ]
        )
        overlay = Overlay(self.base)
        view = ContractState(overlay, membership.NAME)
        for k, v in entries.items():
            view.put(k, v)
        self.base.apply(overlay.writes)
        return key

    def new_key(self, name: str) -> SigningKey:
        key = SigningKey(bytes(canonical.digest(name.encode()))[:32])
        self.keys[name] = key
        return key

    def pub(self, name: str) -> bytes:
        return self.keys[name].verify_key.encode()

    def apply(
        self,
        signer: str,
        contract: str,
        action: str,
        args: Mapping[str, Any],
        *,
        advance_ms: int = 1000,
        nonce: int | None = None,
    ) -> Receipt:
        """Commit one call in its own block; returns its receipt."""
        self.height += 1
        self.time_ms += advance_ms
        overlay = Overlay(self.base)
        call = Call(
            contract=contract,
            action=action,
            args=dict(args),
            signer=self.pub(signer),
            nonce=nonce if nonce is not None else self.height,
            tx_hash=canonical.hash_obj([contract, action, dict(args), self.height]),
        )
        receipt = execute_call(
            self.contracts,
            overlay,
            chain_id=CHAIN_ID,
            height=self.height,
            time_ms=self.time_ms,
            call=call,
        )
        self.base.apply(overlay.writes)
        self.receipts.append(receipt)
        return receipt

    def query(
        self,
        contract: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        caller: str | None = None,
    ) -> Any:
        member: Member | None = None
        if caller is not None:
            member = membership.lookup_member(
                ContractState(self.base, membership.NAME), self.pub(caller)
            )
        return run_query(
            self.contracts,
            self.base,
            chain_id=CHAIN_ID,
            height=self.height,
            time_ms=self.time_ms,
            contract_name=contract,
            name=name,
            args=dict(args or {}),
            caller=member,
        )

    def sign_device(self, device: str, body: Any) -> str:
        """A device's hex signature over ``body`` (tag jangbu/device/v1, this chain)."""
        return canonical.sign(self.keys[device], "jangbu/device/v1", CHAIN_ID, body).hex()


def make_ledger(*contracts: Contract) -> Ledger:
    registry: dict[str, Contract] = {membership.NAME: membership.MembershipContract()}
    for contract in contracts:
        registry[contract.name] = contract
    return Ledger(contracts=registry)


@pytest.fixture
def ledger_factory() -> Any:
    return make_ledger
