"""benchmarks/bench_alternate.py refuses --tree arguments it cannot run, before any run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("bench_alternate",
                                                  ROOT / "benchmarks" / "bench_alternate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkout(path: Path) -> Path:
    (path / ".venv" / "bin").mkdir(parents=True)
    (path / ".venv" / "bin" / "jangbu").write_text("#!/bin/sh\n")
    return path


def test_trees_need_a_name_a_venv_and_a_second_tree(tmp_path: Path) -> None:
    bench = load()
    a, b = checkout(tmp_path / "a"), checkout(tmp_path / "b")
    assert bench.parse_trees([f"x={a}", f"y={b}"]) == {"x": a.resolve(), "y": b.resolve()}
    for items, why in (([f"x={a}"], "at least two"),
                       ([f"x={a}", f"x={b}"], "given twice"),
                       ([f"x={a}", f"y={tmp_path}"], "jangbu is missing"),
                       ([f"{a}", f"y={b}"], "expected NAME=PATH")):
        with pytest.raises(SystemExit, match=why):
            bench.parse_trees(items)
