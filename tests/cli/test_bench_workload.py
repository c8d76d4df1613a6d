"""The benchmark's workload is the same in every run (no growth carried between runs).

Regression: buyer references were the same in every run of the day, so the clearance
contract's combined-taxation groups (buyer, seller, KST day) grew with each run and every
run read more orders per order than the one before it.
"""

from __future__ import annotations

from collections import Counter

from cli.bench import DEFAULT_BUYERS, ORDERS_PER_BUYER, default_buyers, order_args

from cli_support import jangbu

SELLERS = 8  # Bench.setup's seller keys, used round-robin


def refs(run: str, count: int, buyers: int = DEFAULT_BUYERS) -> list[str]:
    return [order_args(run, i, buyers, courier="c", buyer="b", sealed="s")["buyer_ref"]
            for i in range(count)]


def test_every_run_has_new_buyers() -> None:
    assert not set(refs("1700000000", 2000)) & set(refs("1700000060", 2000))


def test_groups_of_one_run_stay_small() -> None:
    count = 6000
    groups = Counter((ref, i % SELLERS) for i, ref in enumerate(refs("1", count)))
    assert max(groups.values()) <= -(-count // DEFAULT_BUYERS)


def test_buyers_bounds_the_distinct_references() -> None:
    assert len(set(refs("1", 500, buyers=7))) == 7
    assert all(len(r) == 64 for r in refs("1", 10))


def test_order_ids_are_unique_per_run() -> None:
    ids = [order_args("9", i, 3, courier="c", buyer="b", sealed="s")["order_id"]
           for i in range(100)]
    assert len(set(ids)) == 100


def test_invalid_buyers_count_is_refused(tmp_path) -> None:
    (tmp_path / "genesis.json").write_text("{}")
    out = jangbu("bench", "--dir", tmp_path, "--buyers", "0")
    assert out.returncode == 1
    assert out.stderr.startswith("jangbu: error:") and "--buyers" in out.stderr


def test_long_runs_get_more_buyers_so_groups_stay_small() -> None:
    """Regression: a 240,000-order run over 5,000 buyers made groups of 48 orders, each
    rewritten whole by every order joining it, so the run measured the groups' growth."""
    assert default_buyers(300) == DEFAULT_BUYERS
    assert default_buyers(20_000) == DEFAULT_BUYERS
    assert default_buyers(240_000) == 60_000
    assert default_buyers(240_001) == 60_001
    for count in (20_000, 240_000, 1_000_003):
        assert -(-count // default_buyers(count)) <= ORDERS_PER_BUYER
    assert max(Counter(refs("1", 20_000, default_buyers(20_000))).values()) == ORDERS_PER_BUYER
