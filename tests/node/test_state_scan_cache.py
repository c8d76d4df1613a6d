"""The committed-state reader remembers small prefix scans: whatever blocks commit, a scan
answers exactly what LevelDB itself holds at that moment."""

from __future__ import annotations

import plyvel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.store import STATE_PREFIX, _CachedStateReader

KEYS = [b"c/g/a/1", b"c/g/a/2", b"c/g/b/1", b"c/r/hs/61", b"c/r/kw/x", b"c/o/1", b"d/z"]
PREFIXES = [b"c/", b"c/g/", b"c/g/a/", b"c/g/b/", b"c/r/", b"c/r/hs/", b"c/o/", b"d/", b"e/"]

writes = st.dictionaries(st.sampled_from(KEYS), st.none() | st.binary(min_size=1, max_size=3),
                         max_size=4)
steps = st.lists(st.one_of(st.tuples(st.just("scan"), st.sampled_from(PREFIXES)),
                           st.tuples(st.just("commit"), writes),
                           st.tuples(st.just("partial"), st.sampled_from(PREFIXES))),
                 max_size=30)


def commit(db, reader: _CachedStateReader, block: dict[bytes, bytes | None]) -> None:
    """What LedgerStore.commit_block does with state writes."""
    with db.write_batch() as batch:
        for key, value in block.items():
            if value is None:
                batch.delete(STATE_PREFIX + key)
            else:
                batch.put(STATE_PREFIX + key, value)
    reader.invalidate(block)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps, st.integers(1, 4), st.integers(1, 3))
def test_cached_scans_always_equal_leveldb(tmp_path_factory, plan, max_prefixes, max_items):
    db = plyvel.DB(str(tmp_path_factory.mktemp("scan")), create_if_missing=True)
    try:
        reader = _CachedStateReader(db, STATE_PREFIX, max_prefixes=max_prefixes,
                                    max_items=max_items)
        for action, arg in plan:
            if action == "commit":
                commit(db, reader, arg)
            elif action == "partial":  # a caller that stops early must not fill the cache
                next(reader.scan(arg), None)
            else:
                truth = [(k[len(STATE_PREFIX):], v)
                         for k, v in db.iterator(prefix=STATE_PREFIX + arg)]
                assert list(reader.scan(arg)) == truth
            assert len(reader._scans) <= max_prefixes
            assert all(len(items) <= max_items for items in reader._scans.values())
    finally:
        db.close()


def test_a_scan_interrupted_by_a_commit_is_not_remembered(tmp_path):
    db = plyvel.DB(str(tmp_path), create_if_missing=True)
    reader = _CachedStateReader(db, STATE_PREFIX)
    commit(db, reader, {b"c/g/a/1": b"1"})
    scan = reader.scan(b"c/g/a/")
    assert next(scan) == (b"c/g/a/1", b"1")
    commit(db, reader, {b"c/g/a/2": b"2"})
    assert list(scan) == []  # the old iterator's view ends
    assert list(reader.scan(b"c/g/a/")) == [(b"c/g/a/1", b"1"), (b"c/g/a/2", b"2")]
    db.close()


def test_two_scans_of_one_prefix_are_remembered_once(tmp_path):
    """Regression (review): two scans of one prefix that both ran to their ends counted the
    prefix twice in ``_lengths``, so after it was forgotten every invalidation still looked
    for prefixes of that length."""
    db = plyvel.DB(str(tmp_path), create_if_missing=True)
    try:
        reader = _CachedStateReader(db, STATE_PREFIX)
        commit(db, reader, {b"c/g/a/1": b"1"})
        first, second = reader.scan(b"c/g/a/"), reader.scan(b"c/g/a/")
        heads = [next(first), next(second)]  # both started before either finished
        assert heads + list(first) + list(second) == [(b"c/g/a/1", b"1")] * 2
        assert reader._lengths == {len(b"c/g/a/"): 1}
        commit(db, reader, {b"c/g/a/2": b"2"})
        assert reader._lengths == {} and reader._scans == {}
    finally:
        db.close()
