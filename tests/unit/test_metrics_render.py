"""node.metrics: counters read at scrape time render as Prometheus counters."""

from __future__ import annotations

import pytest

from node.metrics import Metrics


def test_a_counter_read_when_scraped_renders_its_current_value_as_a_counter() -> None:
    m = Metrics()
    value = [1.5]
    m.counter_from("process_cpu_seconds_total", lambda: value[0], "CPU of this process")
    m.inc("jangbu_blocks_committed_total")
    m.gauge("jangbu_height", lambda: 7)
    first = m.render()
    assert "# HELP process_cpu_seconds_total CPU of this process" in first
    assert "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.500000" \
        in first
    value[0] = 2.25
    assert "process_cpu_seconds_total 2.250000" in m.render()
    assert "jangbu_blocks_committed_total 1" in first and "jangbu_height 7" in first


def test_a_labelled_family_has_one_help_and_one_type_line() -> None:
    m = Metrics()
    for stage, seconds in (("admission", 1.25), ("execution", 2.5)):
        m.counter_from(f'jangbu_stage_cpu_seconds_total{{stage="{stage}"}}',
                       lambda seconds=seconds: seconds, "CPU by stage")
    text = m.render()
    assert text.count("# HELP jangbu_stage_cpu_seconds_total CPU by stage") == 1
    assert text.count("# TYPE jangbu_stage_cpu_seconds_total counter") == 1
    assert 'jangbu_stage_cpu_seconds_total{stage="admission"} 1.250000' in text
    assert 'jangbu_stage_cpu_seconds_total{stage="execution"} 2.500000' in text
    lines = text.splitlines()
    assert lines.index("# TYPE jangbu_stage_cpu_seconds_total counter") < lines.index(
        'jangbu_stage_cpu_seconds_total{stage="admission"} 1.250000')


def test_help_text_is_escaped_and_histograms_get_one_header() -> None:
    m = Metrics()
    m.gauge("jangbu_height", lambda: 1, "a back\\slash\nand a newline")
    m.histogram("jangbu_commit_seconds", "commit time").observe(0.02)
    text = m.render()
    assert "# HELP jangbu_height a back\\\\slash\\nand a newline" in text
    assert text.count("# TYPE jangbu_commit_seconds histogram") == 1
    assert "# HELP jangbu_commit_seconds commit time" in text


def test_python_info_names_this_interpreter_and_its_build_in_escaped_labels() -> None:
    import sys

    from cli.bench import node_pythons, parse_samples
    from node.metrics import interpreter, label_value, python_info_name

    m = Metrics()
    m.gauge(python_info_name(), lambda: 1, "the interpreter")
    text = m.render()
    assert "# TYPE python_info gauge" in text
    major, minor, micro = sys.version_info[:3]
    # The labels of Prometheus' own Python client, so its queries match.
    for label in (f'major="{major}"', f'minor="{minor}"', f'patchlevel="{micro}"',
                  'implementation="CPython"' if sys.implementation.name == "cpython" else ""):
        assert label in text
    assert "\n" not in interpreter() and interpreter().startswith(f"{major}.{minor}.{micro}")
    # What jangbu bench reads back is the build line itself.
    assert node_pythons([parse_samples(text)]) == [interpreter()]
    assert label_value('a "quoted" back\\slash\nline') == 'a \\"quoted\\" back\\\\slash\\nline'


def test_a_build_line_with_quotes_braces_and_backslashes_survives_the_round_trip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding: a label value holding ``}`` made the bench's sample parser skip the
    line, and node_python came back empty."""
    import sys

    from cli.bench import node_pythons, parse_samples
    from node.metrics import interpreter, python_info_name

    odd = '3.11.9 (tags/v3.11.9:"x}", Jan  1 2026) [GCC \\ 12 {weird}]\nsecond line'
    monkeypatch.setattr(sys, "version", odd)
    m = Metrics()
    m.gauge(python_info_name(), lambda: 1)
    m.counter_from("process_cpu_seconds_total", lambda: 2.5)
    samples = parse_samples(m.render())
    assert node_pythons([samples]) == [interpreter()] == [" ".join(odd.split())]
    assert samples["process_cpu_seconds_total"] == 2.5


def test_large_and_fractional_values_keep_every_digit() -> None:
    """Regression: values were written with ``:g`` (6 significant digits), so a counter of
    123,456,789 committed transactions read 1.23457e+08."""
    m = Metrics()
    m.inc("jangbu_txs_committed_total", 123_456_789)
    m.gauge("jangbu_leveldb_bytes", lambda: 55_574_528)
    m.gauge("jangbu_started_at_seconds", lambda: 1_712_345_678.25)
    m.gauge("jangbu_nothing", lambda: float("nan"))
    m.gauge("jangbu_unbounded", lambda: float("inf"))
    m.counter_from("process_cpu_seconds_total", lambda: 98_765.4321)
    m.histogram("jangbu_commit_seconds").observe(1_234_567.5)
    text = m.render()
    for line in ("jangbu_txs_committed_total 123456789", "jangbu_leveldb_bytes 55574528",
                 "jangbu_started_at_seconds 1712345678.25", "jangbu_nothing NaN",
                 "jangbu_unbounded +Inf", "process_cpu_seconds_total 98765.432100",
                 "jangbu_commit_seconds_sum 1234567.5"):
        assert f"\n{line}\n" in f"\n{text}", line
