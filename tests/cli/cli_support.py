"""Helpers for driving the ``jangbu`` CLI as a user would: real subprocesses, temp dirs."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def free_ports(count: int, *, start: int = 20000, stop: int = 60000) -> int:
    """A base port such that ``base .. base+count-1`` are all free on 127.0.0.1 right now."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        base = rng.randrange(start, stop - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError("no free consecutive ports found")
