"""Defaults that a node's configuration shares with the modules that use them.

Why a module of its own, importing nothing: ``jangbu node start`` reads its configuration
first and begins opening the store at once (node/store_open.py), before it imports the
node's modules (~0.25 s). The configuration needs these defaults; importing them from
the state tree and the sync code would import half the node first.
"""

from __future__ import annotations

TREE_CACHE_ENTRIES = 1 << 21
"""Default bound of the state tree's committed-bucket cache, in units of one per cached
bucket plus one per cached entry. Cached buckets are single ``bytes`` (64 bytes an entry);
with the cache's own slots a unit measured ~100 bytes, so ~210 MB at most: a state of up to
~2M keys is all cached, a larger one in part (least recently used buckets are evicted, and
each block then reads its missing buckets from LevelDB). The bound was 2**19 (~450k keys):
past it a long chain's cost per transaction doubled (bench_chain.py --blocks 300: 250 ->
530 µs/tx of wall time by 300,000 orders; 250 flat with this bound). Config: ``[state]
tree_cache_entries``."""

SYNC_DIFFS_BYTES = 96 * 1024 * 1024
"""How many bytes of recent blocks' state diffs a node holds to serve catch-up: ~60,000
clearance orders' worth (~1.65 KB of writes and receipt each on the wire, ~1.2x that in
memory: the writes dict and the receipts' bytes): the last ~25 s of a fully loaded chain
here. It was 32 MiB with the receipts held as objects (2x the wire size in memory), about
the same memory for a third of the blocks. Config: ``[p2p] sync_diffs_bytes``."""

MAX_WAIT_COMMIT_S = 300
"""The longest a submit may wait for its commit (``?timeout=``, ``[api]
wait_commit_timeout_s``, ``jangbu tx submit --wait-timeout``): one bound for the three, so
the CLI refuses what the node would (review: it took up to 86,400, then failed at the node)."""

RUNTIME_CHECKS = ("refuse", "warn")
"""What a link to a validator naming another Python minor version or Unicode version does
(``[p2p] runtime_check``): ``refuse`` it, the default, or connect and ``warn`` in the log,
on ``/v1/status`` and in ``/metrics``. node/p2p/handshake.py says why."""
