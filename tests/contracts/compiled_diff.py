"""Run seeded random clearance workflows and print one digest of every receipt and state.

Run once per build of the clearance contract (the compiled one and, with
``JANGBU_PURE_CONTRACTS=1``, the source): nodes of one network may run either, so both
must give the same bytes. Used by tests/contracts/test_compiled_contract.py.

    python tests/contracts/compiled_diff.py --seed 1 --workflows 200

Prints ``<build> <digest> <receipts> <ok receipts>``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

import nacl.public

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent.parent)]


class _SameSealEveryRun:
    """Sealing is randomised (an ephemeral key per box): the buyers' sealed blobs would
    differ between the two processes. The contract checks only their form."""

    def __init__(self, public_key: nacl.public.PublicKey) -> None:
        self.public_key = public_key

    def encrypt(self, plaintext: bytes) -> bytes:
        return hashlib.sha256(plaintext).digest() + bytes(16) + plaintext


nacl.public.SealedBox = _SameSealEveryRun  # type: ignore[misc,assignment]  # before the import below

from test_clearance import C, setup_ledger  # noqa: E402
from test_clearance_property import ACTIONS, NEXT, ORGS, PROPER, resolve  # noqa: E402
from test_clearance_versions import ORDERS, args_for, parcel_state  # noqa: E402

from contracts.clearance import ClearanceContract, compiled  # noqa: E402


def run(seed: int, workflows: int, steps: int) -> tuple[str, int, int]:
    rng = random.Random(seed)
    digest = hashlib.sha256()
    receipts = ok = 0
    for number in range(workflows):
        ledger = setup_ledger()
        version = ClearanceContract.runs_versions[number % len(ClearanceContract.runs_versions)]
        ledger.contracts[C] = ClearanceContract(rules_version=version)
        for _ in range(rng.randint(4, steps)):
            raw_signer = rng.choice([PROPER] * 14 + ORGS)
            raw_action = rng.choice([NEXT] * 30 + ACTIONS + ["create_order"] * 4)
            order_id = rng.choice(ORDERS)
            variant = rng.randint(0, 3)
            signer, action = resolve(raw_signer, raw_action, parcel_state(ledger, order_id),
                                     variant)
            try:
                args = args_for(ledger, action, order_id, variant)
            except KeyError:  # an action whose arguments need a parcel that is not there
                args = {"order_id": order_id}
            receipt = ledger.apply(signer, C, action, args)
            digest.update(receipt.encoded)
            receipts += 1
            ok += receipt.ok
        for key, value in sorted(ledger.base.data.items()):
            digest.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big")
                          + value)
    return digest.hexdigest(), receipts, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    digest, receipts, ok = run(args.seed, args.workflows, args.steps)
    build = "compiled" if compiled.is_compiled() else "source"
    print(build, digest, receipts, ok)


if __name__ == "__main__":
    main()
