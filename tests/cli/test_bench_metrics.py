"""How ``jangbu bench`` reads the nodes' /metrics: CPU per transaction, in all and by stage."""

from __future__ import annotations

from pathlib import Path

from cli.bench import (
    COMPACTION_METRIC,
    CPU_METRIC,
    LOOP_CPU_METRIC,
    busy_fraction,
    cpu_per_tx,
    machine_cpu_ticks,
    node_pythons,
    parse_samples,
    stage_cpu_per_tx,
    stage_nodes,
    window_rows,
)

PAGE = """# HELP process_cpu_seconds_total user and system CPU time
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total {cpu:.6f}
# TYPE jangbu_stage_cpu_seconds_total counter
jangbu_stage_cpu_seconds_total{{stage="admission"}} {admission:.6f}
jangbu_stage_calls_total{{stage="admission"}} 7.000000
jangbu_height 12
jangbu_tx_commit_latency_seconds_bucket{{le="0.01"}} 3
"""


def page(cpu: float, admission: float) -> dict[str, float]:
    return parse_samples(PAGE.format(cpu=cpu, admission=admission))


def test_samples_are_read_with_their_labels() -> None:
    samples = page(1.5, 0.25)
    assert samples[CPU_METRIC] == 1.5
    assert samples['jangbu_stage_cpu_seconds_total{stage="admission"}'] == 0.25
    assert samples["jangbu_height"] == 12
    assert samples['jangbu_tx_commit_latency_seconds_bucket{le="0.01"}'] == 3
    assert not any(name.startswith("#") for name in samples)


def test_cpu_per_transaction_is_the_mean_over_the_nodes_that_report_it() -> None:
    before = [page(1.0, 0.5), page(2.0, 0.5), {}]
    after = [page(3.0, 1.5), page(3.0, 1.0), {}]
    # (2.0 + 1.0) s over two nodes and 1,000 transactions
    assert cpu_per_tx(before, after, CPU_METRIC, 1000) == 1500.0
    assert cpu_per_tx(before, after, "missing_total", 1000) is None
    assert cpu_per_tx(before, after, CPU_METRIC, 0) is None
    assert stage_cpu_per_tx(before, after, 1000) == {"admission": 750.0}


def test_no_stages_without_stage_accounting() -> None:
    before = [parse_samples("process_cpu_seconds_total 1.0\n")]
    after = [parse_samples("process_cpu_seconds_total 2.0\n")]
    assert stage_cpu_per_tx(before, after, 10) is None


def test_values_that_are_not_numbers_are_left_out() -> None:
    samples = parse_samples('a_total 1e+06\nb NaN\nc +Inf\nd 1.0.0\ne -\nf{x="}"} 2\n'
                            'g 3 1700000000000\n')
    assert samples["a_total"] == 1e6
    assert "d" not in samples and "e" not in samples and "g" not in samples
    assert all(value == value for value in samples.values())  # no NaN taken as a figure


def test_the_nodes_reporting_stages_are_counted() -> None:
    assert stage_nodes([page(1.0, 0.5), parse_samples("process_cpu_seconds_total 1\n"),
                        page(2.0, 0.1)]) == 2


def test_the_interpreters_of_the_nodes_are_reported_once_each_and_unescaped() -> None:
    pyenv = ('python_info{implementation="cpython",version="3.11.7",'
             'build="3.11.7 (main, May 9 2026, 07:35:25) [GCC 12.2.0]"} 1\n')
    odd = ('python_info{implementation="cpython",version="3.11.2",'
           'build="3.11.2 \\"patched\\" (a\\\\b)"} 1\n')
    samples = [parse_samples(pyenv), parse_samples(odd), parse_samples(pyenv), {}]
    assert node_pythons(samples) == ["3.11.7 (main, May 9 2026, 07:35:25) [GCC 12.2.0]",
                                     '3.11.2 "patched" (a\\b)']
    assert node_pythons([parse_samples("process_cpu_seconds_total 1\n")]) == []


def test_the_machine_busy_share_comes_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\n")
    before = machine_cpu_ticks(str(stat))
    assert before == (160, 1000)  # idle and iowait are not busy; guest is inside user
    stat.write_text("cpu  250 5 90 850 50 3 2 0 9 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n")
    after = machine_cpu_ticks(str(stat))
    assert after == (350, 1250)
    assert busy_fraction(before, after) == round(190 / 250, 3)


def test_no_machine_busy_share_without_two_readings(tmp_path: Path) -> None:
    assert machine_cpu_ticks(str(tmp_path / "missing")) is None
    (tmp_path / "odd").write_text("intr 1 2 3\n")
    assert machine_cpu_ticks(str(tmp_path / "odd")) is None
    assert busy_fraction(None, (1, 2)) is None
    assert busy_fraction((5, 10), (5, 10)) is None  # no time passed


def test_the_real_machine_busy_share_is_a_fraction() -> None:
    first = machine_cpu_ticks()
    if first is None:  # not Linux
        return
    sum(range(2_000_000))  # some CPU time, so that ticks pass
    share = busy_fraction(first, machine_cpu_ticks())
    assert share is None or 0.0 <= share <= 1.0


def test_a_run_is_cut_into_windows_by_commit_time() -> None:
    t0 = 100.0
    marks = [(t0, [page(1.0, 0.0)]), (t0 + 10, [page(1.5, 0.0)]), (t0 + 20, None),
             (t0 + 25, [page(3.0, 0.0)])]
    sent = {"a": t0, "b": t0 + 1, "c": t0 + 2, "d": t0 + 12, "e": t0 + 21}
    committed = {"a": t0 + 0.5, "b": t0 + 9.0, "c": t0 + 11.0, "d": t0 + 12.5,
                 "e": t0 + 21.1}
    rows = window_rows(t0, marks, committed, sent)
    assert [row["t_s"] for row in rows] == [0.0, 10.0, 20.0]
    assert [row["committed"] for row in rows] == [2, 2, 1]
    assert rows[0]["tx_per_s"] == 0.2 and rows[2]["tx_per_s"] == 0.2
    assert rows[0]["p50_ms"] == 500.0 and rows[0]["p99_ms"] == 8000.0
    assert rows[1]["p50_ms"] == 500.0 and rows[1]["p99_ms"] == 9000.0
    # 0.5 CPU seconds over the first window's 2 commits; no samples, no figure
    assert rows[0]["node_cpu_us_per_tx"] == 250_000.0
    assert rows[1]["node_cpu_us_per_tx"] is None and rows[2]["node_cpu_us_per_tx"] is None
    # these pages carry neither the loop thread's CPU nor LevelDB's figures
    assert all(row["background_cpu_s"] is None and row["leveldb_compaction_s"] is None
               for row in rows)


def test_a_window_shows_what_other_threads_and_leveldbs_compactions_took() -> None:
    def sample(process: float, loop: float, compaction: float) -> dict[str, float]:
        return {CPU_METRIC: process, LOOP_CPU_METRIC: loop, COMPACTION_METRIC: compaction}

    # two nodes: one compacted for 3 s (1.5 s of CPU off its loop), the other not at all
    marks = [(0.0, [sample(10.0, 9.0, 4.0), sample(10.0, 9.5, 0.0)]),
             (10.0, [sample(14.0, 11.5, 7.0), sample(12.0, 11.5, 0.0)])]
    rows = window_rows(0.0, marks, {"a": 5.0}, {"a": 4.0})
    assert rows[0]["background_cpu_s"] == 0.75  # (1.5 + 0.0) / 2
    assert rows[0]["leveldb_compaction_s"] == 1.5  # (3 + 0) / 2
    assert rows[0]["node_cpu_us_per_tx"] == 3_000_000.0


def test_an_empty_window_is_reported_as_such() -> None:
    rows = window_rows(0.0, [(0.0, None), (5.0, None)], {}, {})
    assert rows == [{"t_s": 0.0, "committed": 0, "tx_per_s": 0.0, "p50_ms": 0.0,
                     "p99_ms": 0.0, "node_cpu_us_per_tx": None, "background_cpu_s": None,
                     "leveldb_compaction_s": None}]


def test_background_cpu_counts_only_nodes_reporting_both_figures() -> None:
    """A node without the loop thread's figure (another build) must not be subtracted
    from another node's process CPU (review)."""
    full = ({CPU_METRIC: 10.0, LOOP_CPU_METRIC: 9.0}, {CPU_METRIC: 13.0, LOOP_CPU_METRIC: 11.0})
    partial = ({CPU_METRIC: 10.0}, {CPU_METRIC: 20.0})
    rows = window_rows(0.0, [(0.0, [full[0], partial[0]]), (5.0, [full[1], partial[1]])],
                       {}, {})
    assert rows[0]["background_cpu_s"] == 1.0
