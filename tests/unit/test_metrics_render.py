"""node.metrics: counters read at scrape time render as Prometheus counters."""

from __future__ import annotations

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
