"""``jangbu devnet up|status|down``: a whole network on this machine, one process per node.

``up`` creates the network with ``network init`` when DIR has no genesis yet, starts every
node in the background (``DIR/<org>/node.pid``, ``DIR/<org>/node.log``) and returns once
every node answers ``/v1/status`` and is connected to all the others. Nodes make no empty
blocks while idle, so readiness is "API up and peers == n - 1", not a block height.
``down`` sends SIGTERM, waits up to 10 s, then SIGKILL; it is safe to run twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.client_commands import grace_seconds, positive_seconds
from cli.errors import CliError
from cli.network import DEFAULT_BASE_PORT, init_network, parse_params, preset_contracts
from cli.output import Progress, age, command, print_json, print_table, subcommand_help
from cli.presets import PRESETS

PID_FILE = "node.pid"
LOG_FILE = "node.log"
STOP_GRACE_S = 10.0
RUN_MARK = "---- jangbu devnet up:"


@dataclass(frozen=True)
class DevNode:
    name: str
    home: Path
    p2p_listen: str
    api_listen: str

    @property
    def pid_file(self) -> Path:
        return self.home / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.home / LOG_FILE

    @property
    def api_url(self) -> str:
        host, port = self.api_listen.rsplit(":", 1)
        if host in ("0.0.0.0", "", "[::]", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def addresses(self) -> list[tuple[str, str, int]]:
        out = []
        for what, listen in (("p2p", self.p2p_listen), ("api", self.api_listen)):
            host, port = listen.rsplit(":", 1)
            out.append((what, host.strip("[]"), int(port)))
        return out


# --- discovering the nodes of a directory ---------------------------------------------------


def load_devnet(directory: Path) -> list[DevNode]:
    """The nodes of ``directory``, in genesis order, with the addresses of their config."""
    from node.config import ConfigError, load_config

    genesis_path = directory / "genesis.json"
    try:
        genesis = json.loads(genesis_path.read_text())
        names = [str(v["name"]) for v in genesis["validators"]]
    except FileNotFoundError:
        raise CliError(f"{directory} has no genesis.json; create it with "
                       f"`jangbu devnet up --dir {directory}`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"{genesis_path} is not a valid genesis file: {exc}") from None
    if (directory / "config.toml").exists() and not (directory / names[0]).exists():
        # A node home, one level too deep (review: "node home …/a/a does not exist").
        raise CliError(f"{directory} is a node's home, not a network directory: give "
                       f"--dir {directory.parent}")
    nodes = []
    for name in names:
        try:
            config = load_config(directory / name)
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        nodes.append(DevNode(name, directory / name, config.p2p_listen, config.api_listen))
    return nodes


def read_pid(node: DevNode) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_node_process(pid: int, node: DevNode) -> bool:
    """Is ``pid`` alive and (where /proc tells us) a ``node start`` of this home?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie has stopped; only its parent has not reaped it yet
    except (OSError, IndexError):
        pass
    text = [a.decode(errors="replace") for a in args]
    return "start" in text and any(Path(a).resolve() == node.home.resolve()
                                   for a in text if a.startswith(("/", ".")) or "/" in a)


def running_pid(node: DevNode) -> int | None:
    pid = read_pid(node)
    return pid if pid is not None and is_node_process(pid, node) else None


def port_in_use(host: str, port: int) -> bool:
    """Would the node fail to bind ``host:port``? (SO_REUSEADDR, as the node itself sets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def fetch_status(url: str, timeout_s: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/v1/status", timeout=timeout_s) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except (OSError, urllib.error.URLError, ValueError):
        return None


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    run = text.rsplit(RUN_MARK, 1)[-1].split("\n", 1)[-1] if RUN_MARK in text else text
    return "\n".join(run.rstrip("\n").splitlines()[-lines:]) or "(nothing logged yet)"


# --- up ---------------------------------------------------------------------------------------


def cmd_devnet_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if (directory / "genesis.json").exists():
        refuse_if_running(directory, load_devnet(directory))
    if args.param and not args.fresh and (directory / "genesis.json").exists():
        raise CliError(f"--param sets genesis, and {directory} already has one; add --fresh "
                       "to create the network again (its chain is deleted)")
    if args.fresh or not (directory / "genesis.json").exists():
        try:
            init_network(directory, PRESETS[args.preset], preset_contracts(args.preset),
                         chain_id=f"jangbu-{args.preset}", base_port=args.base_port,
                         force=args.fresh, consensus=parse_params(args.param))
        except (FileExistsError, ValueError) as exc:
            raise CliError(str(exc)) from None
        print(f"created {args.preset} network in {directory}", file=sys.stderr)
    nodes = load_devnet(directory)
    for node in nodes:
        for what, host, port in node.addresses():
            if port_in_use(host, port):
                raise CliError(f"port {port} ({node.name} {what}) is already in use on {host}; "
                               "stop what uses it or pick another --base-port with --fresh")
    procs = start_nodes(nodes)
    try:
        wait_ready(nodes, procs, args.timeout)
    except BaseException:
        stop_nodes(nodes)
        raise
    if args.json:
        print_json([{"node": n.name, "pid": procs[n.name].pid, "api": n.api_url,
                     "web": n.api_url + "/", "log": str(n.log_file)} for n in nodes])
    else:
        print_table(["node", "pid", "api", "web page", "log"],
                    [[n.name, procs[n.name].pid, n.api_url, n.api_url + "/", str(n.log_file)]
                     for n in nodes])
        print(f"stop with: jangbu devnet down --dir {directory}")
    return 0


def refuse_if_running(directory: Path, nodes: list[DevNode]) -> None:
    for node in nodes:
        pid = running_pid(node)
        if pid is not None:
            raise CliError(f"node {node.name} of {directory} is already running (pid {pid}); "
                           f"stop it with: jangbu devnet down --dir {directory}")
        node.pid_file.unlink(missing_ok=True)  # stale


def start_nodes(nodes: list[DevNode]) -> dict[str, subprocess.Popen[bytes]]:
    procs = {}
    for node in nodes:
        with open(node.log_file, "ab") as log:
            log.write(f"{RUN_MARK} {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n".encode())
            log.flush()
            procs[node.name] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "node", "start", "--home",
                 str(node.home.resolve())],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=node.home)
        node.pid_file.write_text(f"{procs[node.name].pid}\n")
    return procs


def wait_ready(nodes: list[DevNode], procs: dict[str, subprocess.Popen[bytes]],
               timeout_s: float) -> None:
    """Until every API answers and every node sees n - 1 peers; else a clear error."""
    progress = Progress(f"starting {len(nodes)} nodes")
    deadline = time.monotonic() + timeout_s
    want = len(nodes) - 1
    last: dict[str, dict[str, Any] | None] = {}
    while True:
        for node in nodes:
            code = procs[node.name].poll()
            if code is not None:
                progress.done("failed")
                raise CliError(f"node {node.name} exited with code {code} during start; "
                               f"last lines of {node.log_file}:\n{tail(node.log_file)}")
            last[node.name] = fetch_status(node.api_url)
        up = [s for s in last.values() if s is not None]
        connected = [s for s in up if len(s.get("peers", [])) >= want]
        if len(connected) == len(nodes):
            progress.done(f"{len(nodes)} nodes up and connected")
            return
        if time.monotonic() > deadline:
            progress.done("timed out")
            laggard = next(n for n in nodes
                           if last[n.name] is None or len(last[n.name]["peers"]) < want)  # type: ignore[index]
            state = ("its API does not answer" if last[laggard.name] is None
                     else f"it sees {len(last[laggard.name]['peers'])}/{want} peers")  # type: ignore[index]
            raise CliError(f"devnet not ready after {timeout_s:g}s: node {laggard.name} "
                           f"({laggard.api_url}): {state}; last lines of "
                           f"{laggard.log_file}:\n{tail(laggard.log_file)}")
        progress.update(f"{len(up)}/{len(nodes)} answering, {len(connected)}/{len(nodes)} "
                        "connected")
        time.sleep(0.2)


# --- down -------------------------------------------------------------------------------------


def stop_nodes(nodes: list[DevNode], *,
               grace_s: float = STOP_GRACE_S) -> list[tuple[str, int | None, str]]:
    """SIGTERM every running node, wait, SIGKILL stragglers; remove pid files."""
    running: dict[str, int] = {}
    report: list[tuple[str, int | None, str]] = []
    for node in nodes:
        pid = running_pid(node)
        if pid is None:
            report.append((node.name, read_pid(node), "not running"))
            node.pid_file.unlink(missing_ok=True)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        running[node.name] = pid
    by_name = {n.name: n for n in nodes}
    deadline = time.monotonic() + grace_s
    while running and time.monotonic() < deadline:
        for name, pid in list(running.items()):
            _reap(pid)
            if not is_node_process(pid, by_name[name]):
                report.append((name, pid, "stopped"))
                del running[name]
        time.sleep(0.1)
    for name, pid in running.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            _reap(pid)
            if not is_node_process(pid, by_name[name]):
                break
            time.sleep(0.05)
        report.append((name, pid, f"killed (no exit {grace_s:g}s after SIGTERM)"))
    for node in nodes:
        node.pid_file.unlink(missing_ok=True)
    order = {n.name: i for i, n in enumerate(nodes)}
    return sorted(report, key=lambda r: order[r[0]])


def _reap(pid: int) -> None:
    """Collect our own child's exit status (when ``up`` stops what it just started)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def cmd_devnet_down(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / "genesis.json").exists():
        print(f"no devnet in {directory}; nothing to stop", file=sys.stderr)
        return 0
    report = stop_nodes(load_devnet(directory), grace_s=args.timeout)
    if args.json:
        print_json([{"node": n, "pid": p, "result": r} for n, p, r in report])
    else:
        for name, pid, result in report:
            print(f"{name:<16} {'pid ' + str(pid) if pid else '':<12} {result}")
    return 0


# --- status -----------------------------------------------------------------------------------


def cmd_devnet_status(args: argparse.Namespace) -> int:
    nodes = load_devnet(Path(args.dir))
    rows: list[dict[str, Any]] = []
    for node in nodes:
        pid = read_pid(node)
        alive = pid is not None and is_node_process(pid, node)
        status = fetch_status(node.api_url) if alive else None
        rows.append({
            "node": node.name,
            "pid": pid,
            "alive": alive,
            "api": node.api_url,
            "answering": status is not None,
            "height": status["height"] if status else None,
            "peers": len(status["peers"]) if status else None,
            "last_block_time_ms": status.get("latest_block_time_ms") if status else None,
            "syncing": status.get("syncing") if status else None,
        })
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["node", "pid", "alive", "height", "peers", "last block", "api"],
        [[r["node"], r["pid"], r["alive"], r["height"],
          None if r["peers"] is None else f"{r['peers']}/{len(nodes) - 1}",
          (age(r["last_block_time_ms"]) + " ago") if r["last_block_time_ms"] else "-",
          r["api"]] for r in rows])
    return 0


# --- argparse -----------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    devnet = subparsers.add_parser(
        "devnet", help="run a whole network on this machine (background processes)")
    sub = devnet.add_subparsers(dest="devnet_command", metavar="SUBCOMMAND")

    p = sub.add_parser("up", help="create (if needed) and start every node, wait until connected")
    p.add_argument("--preset", choices=sorted(PRESETS), default="customs",
                   help="network to create when DIR has no genesis yet (default: customs)")
    p.add_argument("--dir", required=True, help="network directory")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help=f"first port when creating the network (default {DEFAULT_BASE_PORT})")
    p.add_argument("--fresh", action="store_true",
                   help="delete DIR's network (keys, chain) and create a new one")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="when creating: a genesis consensus parameter, e.g. "
                        "min_block_interval_ms=100 (repeatable)")
    p.add_argument("--timeout", type=positive_seconds, default=30.0,
                   help="seconds to wait for every node to connect (default 30)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=command(cmd_devnet_up))

    p = sub.add_parser("status", help="pid, height, peers and last block of every node")
    p.add_argument("--dir", required=True, help="network directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=command(cmd_devnet_status))

    p = sub.add_parser("down", help="stop every node (SIGTERM, then SIGKILL after 10 s)")
    p.add_argument("--dir", required=True, help="network directory")
    p.add_argument("--timeout", type=grace_seconds, default=STOP_GRACE_S,
                   help=f"seconds between SIGTERM and SIGKILL (default {STOP_GRACE_S:g})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=command(cmd_devnet_down))

    devnet.set_defaults(func=subcommand_help(devnet))
