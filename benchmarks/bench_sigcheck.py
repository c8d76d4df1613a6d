"""CPU per Ed25519 check: from the key tables (node/_ed25519_keyed.c) against libsodium.

    .venv/bin/python benchmarks/bench_sigcheck.py [--keys 200] [--rounds 10] [--bytes 300]
                                                  [--repeat 2]

``--keys`` keys each sign ``--rounds`` messages, in turn (as devices send readings), and
every signature is checked once, one per call as admission checks them; the run is
repeated with the tables off and on, alternated. It prints µs of process time per check
and what the tables did (checks accepted from them, left to libsodium, built, evicted).
One key (``--keys 1``) is the best case; more keys than the 64 tables, the case the
tables' admission by signature count is for (docs/benchmarks.md, twenty-ninth round).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl.signing

from node import sigcheck


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bytes", type=int, default=300, help="message size")
    parser.add_argument("--repeat", type=int, default=2, help="alternated pairs")
    args = parser.parse_args()
    compiled = sigcheck._compiled
    if compiled is None or not sigcheck.keyed_checks():
        raise SystemExit("the compiled helper or its key tables are not available here")
    keys = [nacl.signing.SigningKey(hashlib.sha256(b"device %d" % i).digest())
            for i in range(args.keys)]
    items = []
    for round_ in range(args.rounds):
        for i, key in enumerate(keys):
            message = (b"reading %d %d " % (round_, i)).ljust(args.bytes, b".")
            items.append((bytes(key.verify_key), message, bytes(key.sign(message).signature)))
    print(f"{args.keys} keys x {args.rounds} rounds, {args.bytes}-byte messages, "
          f"{len(items)} checks a run")
    for _ in range(args.repeat):
        for on in (False, True):
            sigcheck.use_keyed_checks(on)  # (off drops every table; on starts afresh)
            before = compiled.keyed_stats()
            started = time.process_time()
            for item in items:
                compiled.verify_many([item])
            spent = time.process_time() - started
            after = compiled.keyed_stats()
            done = {name: after[name] - before[name] for name in after}
            print(f"{'tables' if on else 'libsodium':<10} {spent / len(items) * 1e6:7.1f} µs "
                  f"a check  {done}")
    sigcheck.use_keyed_checks(True)


if __name__ == "__main__":
    main()
