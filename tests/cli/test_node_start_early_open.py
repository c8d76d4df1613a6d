"""``jangbu node start`` begins opening an existing store before it imports the node.

Why it matters: a restarted node replays LevelDB's log (0.3-0.6 s after a run under load)
with the GIL released; begun before the ~0.25 s of the node's imports instead of after
the CLI's own ~0.1 s, a killed node is ready ~0.1 s sooner (docs/benchmarks.md). These
run in fresh interpreters: what is imported is the point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import plyvel

from cli.main import _begin_opening_the_store
from node import store_open

from cli_support import REPO, cli_env

HEAVY = ("asyncio", "aiohttp", "nacl.signing", "node.app", "node.store", "node.state_tree",
         "node.execution", "cli.network", "cli.presets")


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=cli_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_cli_imports_nothing_heavy() -> None:
    loaded = run_python(f"import sys, cli.main; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert loaded == "[]"


def with_a_store(network: tuple[Path, int]) -> Path:
    data = network[0] / "solo" / "data"
    plyvel.DB(str(data), create_if_missing=True).close()  # what a node leaves: CURRENT
    return data


def test_node_start_opens_the_store_before_importing_the_node(
        network: tuple[Path, int]) -> None:
    data = with_a_store(network)
    home = network[0] / "solo"
    for words in (["--home", str(home)], [f"--home={home}"],
                  ["--log-level", "debug", "--home", str(home)]):
        out = run_python(
            "import sys, cli.main\n"
            "from node import store_open\n"
            f"cli.main._begin_opening_the_store({words!r})\n"
            f"print(sorted(store_open._PREOPENED), [m for m in {HEAVY!r} if m in sys.modules])\n"
            f"store_open.take_preopened({str(data)!r}).result().close()\n")
        assert out == f"[{str(data)!r}] []", words


def test_a_home_it_cannot_read_is_left_for_node_start_to_report(tmp_path: Path) -> None:
    for words in ([], ["--home"], ["--home", str(tmp_path / "nowhere")],
                  ["--home", str(tmp_path)]):  # a directory without config.toml
        _begin_opening_the_store(words)
    assert store_open._PREOPENED == {}


def test_an_open_node_start_did_not_take_is_closed(network: tuple[Path, int]) -> None:
    """The early open reads ``--home`` itself; argparse may end with another home (an
    abbreviated ``--hom``), or stop at a bad flag or ``--help``. The open it began must not
    keep the directory's LevelDB lock (review, eighteenth round)."""
    data = with_a_store(network)
    home = network[0] / "solo"
    elsewhere = network[0] / "elsewhere"
    elsewhere.mkdir()
    for words in (["--home", str(home), "--log-level", "loud"],
                  ["--home", str(home), "--help"],
                  ["--home", str(home), "--hom", str(elsewhere)]):
        out = run_python(
            "import contextlib, plyvel, cli.main\n"
            "with contextlib.suppress(SystemExit):\n"
            f"    cli.main.main(['node', 'start', *{words!r}])\n"
            f"plyvel.DB({str(data)!r}).close()\n"  # the lock is free again
            "from node import store_open\n"
            "print(store_open._PREOPENED)\n")
        assert out.splitlines()[-1] == "{}", words
