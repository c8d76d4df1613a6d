"""Prometheus text-format metrics without a dependency: counters, gauges, one histogram.

Names follow Prometheus conventions (``jangbu_`` prefix, ``_total`` counters, ``_seconds``
units). Rendering is cheap and happens only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def label_value(text: str) -> str:
    """``text`` as a Prometheus label value: backslash, double quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def interpreter() -> str:
    """This interpreter's ``sys.version`` on one line: version, build date and compiler."""
    return " ".join(sys.version.split())


def python_info_name() -> str:
    """The name and labels of the ``python_info`` gauge (always 1): which interpreter runs
    this process. The labels of Prometheus' own Python client's sample of that name
    (``implementation``, ``major``, ``minor``, ``patchlevel``, ``version``), so queries
    written for it match, and ``build``: ``sys.version`` on one line.

    Why: on one machine the same node code used ~10% less CPU per transaction under
    Debian's CPython 3.11 (built with profile-guided and link-time optimisation) than under
    a pyenv build without them (docs/benchmarks.md, twenty-third round), so a throughput
    figure means little without it. ``build`` tells two builds apart where
    ``version`` alone cannot.
    """
    # From sys.version_info, not platform (which parses sys.version and raises on a build
    # string it does not know): the same values for every CPython and PyPy.
    info = sys.version_info
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        version += {"alpha": "a", "beta": "b", "candidate": "rc"}.get(info.releaselevel,
                                                                     info.releaselevel)
        version += str(info.serial)
    name = sys.implementation.name
    labels = {"implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(name, name),
              "major": str(info.major), "minor": str(info.minor),
              "patchlevel": str(info.micro), "version": version, "build": interpreter()}
    return "python_info{" + ",".join(f'{name}="{label_value(value)}"'
                                      for name, value in labels.items()) + "}"


def sample_text(value: float) -> str:
    """A sample's value as the Prometheus text format takes it, without losing digits.

    Why: ``:g`` kept 6 significant digits, so ``jangbu_txs_committed_total`` past a million
    read ``1.23457e+06`` and a ``rate()`` over it moved in steps of thousands; byte gauges
    of LevelDB's levels were rounded the same way (review, thirtieth round). A whole number
    is written whole, any other exactly (``repr``), and the special values as Prometheus
    spells them.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        # Read when scraped: name -> (Prometheus type, reader).
        self.readings: dict[str, tuple[str, Callable[[], float]]] = {}
        self.help: dict[str, str] = {}
        self.histograms: dict[str, Histogram] = {}

    def inc(self, name: str, amount: float = 1.0) -> None:
        self.counters[name] = self.counters.get(name, 0.0) + amount

    def declare(self, name: str, help_text: str) -> None:
        """Export counter ``name`` at 0 before its first increment.

        Why: a counter absent until it first moves defeats the alerts written on it
        (``increase(jangbu_evidence_total[5m]) > 0`` has no series to start from, so the
        first evidence ever seen does not fire it; operator review)."""
        self.counters.setdefault(name, 0.0)
        self.help[name] = help_text

    def counter_from(self, name: str, read: Callable[[], float], help_text: str = "") -> None:
        """A counter whose value is read when scraped (e.g. the process's CPU seconds)."""
        self._reading(name, "counter", read, help_text)

    def gauge(self, name: str, read: Callable[[], float], help_text: str = "") -> None:
        self._reading(name, "gauge", read, help_text)

    def _reading(self, name: str, kind: str, read: Callable[[], float], help_text: str) -> None:
        self.readings[name] = (kind, read)
        if help_text:
            self.help[name] = help_text

    def histogram(self, name: str, help_text: str = "") -> Histogram:
        if name not in self.histograms:
            self.histograms[name] = Histogram()
            if help_text:
                self.help[name] = help_text
        return self.histograms[name]

    def render(self) -> str:
        lines: list[str] = []
        # A family's HELP and TYPE lines come once, before its first sample: samples of one
        # name with different labels (``name{stage="..."}``) are one family to Prometheus,
        # and its text format refuses a second TYPE line for it.
        typed: set[str] = set()

        def header(name: str, kind: str) -> None:
            family = name.split("{")[0]
            if family in typed:
                return
            typed.add(family)
            help_text = self.help.get(name) or self.help.get(family)
            if help_text:
                escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
                lines.append(f"# HELP {family} {escaped}")
            lines.append(f"# TYPE {family} {kind}")

        for name in sorted(self.counters):
            header(name, "counter")
            lines.append(f"{name} {sample_text(self.counters[name])}")
        for name in sorted(self.readings):
            kind, read = self.readings[name]
            header(name, kind)
            value = float(read())
            # A counter read when scraped keeps its microseconds (CPU seconds grow large).
            text = f"{value:.6f}" if kind == "counter" and math.isfinite(value) else (
                sample_text(value))
            lines.append(f"{name} {text}")
        for name in sorted(self.histograms):
            hist = self.histograms[name]
            header(name, "histogram")
            cumulative = 0
            for bound, count in zip(hist.buckets, hist.counts, strict=False):
                cumulative += count
                lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
            lines.append(f'{name}_bucket{{le="+Inf"}} {hist.count}')
            lines.append(f"{name}_sum {sample_text(hist.sum)}")
            lines.append(f"{name}_count {hist.count}")
        return "\n".join(lines) + "\n"
