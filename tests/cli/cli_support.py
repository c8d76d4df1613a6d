"""Helpers for driving the ``jangbu`` CLI as a user would: real subprocesses, temp dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

import port_support  # noqa: E402


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JANGBU_NODE", None)
    env.pop("JANGBU_KEY", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def jangbu(*args: str | Path, timeout: float = 30.0,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cli.main ARGS`` and return the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=cli_env(),
                          cwd=cwd or REPO)


def start_jangbu(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), cwd=cwd or REPO, start_new_session=True)


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> tuple[str, str]:
    """SIGTERM, then SIGKILL; returns (stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def free_ports(count: int) -> int:
    """A base port such that ``base .. base+count-1`` are free now, below the ephemeral range."""
    return port_support.free_base_port(count)
