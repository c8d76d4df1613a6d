"""Child process for the crash test: commits blocks forever until it is SIGKILLed.

``background`` as second argument: each block's batch is written on a second thread while
the next block is built, as block sync does (``Engine.commit(..., background=True)``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key


def main(path: str, background: bool = False) -> None:
    store, engine = open_engine(path, make_genesis())
    validator, admin = seed_key("v0"), seed_key("admin")
    last_commit = store.get_commit(store.height) if store.height else None
    print("ready", store.height, flush=True)
    while True:
        h = store.height + 1
        txs = [add_member_tx(admin, f"c{h}-{i}", h * 100 + i) for i in range(20)]
        block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=T0 + h,
                                   txs=txs, last_commit=last_commit)
        cert = certify(h, block.hash, [validator])
        engine.commit(block, cert, background=background)
        last_commit = cert


if __name__ == "__main__":
    main(sys.argv[1], background=sys.argv[2:] == ["background"])
