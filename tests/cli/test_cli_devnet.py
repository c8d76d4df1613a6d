"""A 4-node customs devnet driven only through the CLI: up, status, tx, query, events, down."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from cli_support import free_ports, jangbu

ORGS = ["customs", "seller", "courier", "buyer"]


def kill_leftovers(directory: Path) -> None:
    """Last resort after ``devnet down``: SIGKILL any node whose pid file remains."""
    for pid_file in directory.glob("*/node.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    directory = tmp_path_factory.mktemp("devnet") / "customs"
    base = free_ports(8)
    pids: list[int] = []
    try:
        result = jangbu("devnet", "up", "--preset", "customs", "--dir", directory,
                        "--base-port", base, "--json", timeout=60)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        pids = [row["pid"] for row in rows]
        assert [row["node"] for row in rows] == ORGS
        assert [row["api"] for row in rows] == [f"http://127.0.0.1:{base + 2 * i + 1}"
                                                for i in range(4)]
        yield directory, base
    finally:
        jangbu("devnet", "down", "--dir", directory, "--timeout", "3", timeout=60)
        kill_leftovers(directory)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def api(base: int, i: int = 0) -> str:
    return f"http://127.0.0.1:{base + 2 * i + 1}"


def test_devnet_up_wrote_pid_and_log_files(devnet: tuple[Path, int]) -> None:
    directory, _ = devnet
    for org in ORGS:
        assert int((directory / org / "node.pid").read_text()) > 0
        assert (directory / org / "node.log").exists()


def test_devnet_status_shows_every_node_connected(devnet: tuple[Path, int]) -> None:
    directory, _ = devnet
    result = jangbu("devnet", "status", "--dir", directory, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["node"] for r in rows] == ORGS
    assert all(r["alive"] and r["answering"] and r["peers"] == 3 for r in rows), rows
    table = jangbu("devnet", "status", "--dir", directory)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["NODE", "PID", "ALIVE"]
    assert all("3/3" in line for line in table.stdout.splitlines()[1:])


def test_invalid_devnet_up_while_running(devnet: tuple[Path, int]) -> None:
    directory, _ = devnet
    result = jangbu("devnet", "up", "--dir", directory)
    assert result.returncode == 1
    assert "already running" in result.stderr and "devnet down" in result.stderr


def test_status_of_one_node(devnet: tuple[Path, int]) -> None:
    _, base = devnet
    result = jangbu("status", "--node", api(base, 1), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["name"] == "seller" and len(status["peers"]) == 3
    text = jangbu("status", "--node", api(base, 1))
    assert "chain:" in text.stdout and "3/3" in text.stdout


def test_member_add_query_events_and_revoke(devnet: tuple[Path, int], tmp_path: Path) -> None:
    directory, base = devnet
    admin_key = directory / "customs" / "member.key"
    pubkey = SigningKey.generate().verify_key.encode().hex()

    # tx submit: an org admin registers a new member key; the receipt is OK.
    args = json.dumps({"pubkey": pubkey, "roles": ["customs"], "label": "clerk"})
    result = jangbu("tx", "submit", "--node", api(base), "--key", admin_key,
                    "--contract", "membership", "--action", "add_member", "--args", args)
    assert result.returncode == 0, result.stderr
    assert ": OK" in result.stdout and "member_added" in result.stdout
    tx_hash = result.stdout.split()[1].rstrip(":")

    # The same key again is recorded with a failure code: exit 1, receipt still printed.
    again = jangbu("member", "add", "--node", api(base, 2), "--key", admin_key,
                   "--pubkey", pubkey, "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["code"] == "E_EXISTS"
    assert again.stderr.startswith("jangbu: error: transaction ")

    # Any node answers for the committed transaction.
    got = jangbu("tx", "get", tx_hash, "--node", api(base, 3), "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["code"] == "OK"

    orgs = jangbu("query", "membership", "orgs", "--node", api(base, 1), "--json")
    assert orgs.returncode == 0, orgs.stderr
    assert sorted(o["id"] for o in json.loads(orgs.stdout)) == sorted(ORGS)
    members = jangbu("query", "membership", "members", "--args", '{"org": "customs"}',
                     "--node", api(base))
    assert members.returncode == 0 and pubkey in members.stdout and "clerk" in members.stdout

    events = jangbu("events", "--node", api(base, 2), "--contract", "membership")
    assert events.returncode == 0, events.stderr
    assert "membership.member_added" in events.stdout and pubkey in events.stdout
    filtered = jangbu("events", "--node", api(base), "--type", "member_revoked", "--json")
    assert filtered.returncode == 0 and filtered.stdout == ""

    revoke = jangbu("member", "revoke", "--node", api(base), "--key", admin_key,
                    "--pubkey", pubkey)
    assert revoke.returncode == 0, revoke.stderr
    revoked = jangbu("events", "--node", api(base), "--key", pubkey, "--json")
    lines = [json.loads(line) for line in revoked.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["member_added", "member_revoked"]

    block = jangbu("block", "latest", "--node", api(base))
    assert block.returncode == 0 and "membership.revoke_member" in block.stdout


def test_invalid_tx_rejected_by_the_node(devnet: tuple[Path, int]) -> None:
    directory, base = devnet
    result = jangbu("tx", "submit", "--node", api(base), "--key",
                    directory / "seller" / "member.key", "--contract", "membership",
                    "--action", "no_such_action")
    assert result.returncode == 1
    assert result.stderr == ("jangbu: error: E_UNKNOWN_ACTION: membership has no action "
                             "'no_such_action'\n")


def test_text_from_other_organisations_cannot_drive_the_terminal(
        devnet: tuple[Path, int]) -> None:
    """Regression (black-box review): a label, reason or description written by another
    organisation reached the operator's terminal raw, escape sequences included (retitle
    the window, erase the line, print a forged line)."""
    directory, base = devnet
    hostile = "\x1b]0;pwned\x07\x1b[2K\rh=999 forged\x9b"
    pubkey = SigningKey.generate().verify_key.encode().hex()
    args = json.dumps({"pubkey": pubkey, "roles": ["seller"], "label": hostile})
    submitted = jangbu("tx", "submit", "--node", api(base), "--key",
                       directory / "seller" / "member.key", "--contract", "membership",
                       "--action", "add_member", "--args", args)
    assert submitted.returncode == 0, submitted.stderr
    for command in (["events", "--node", api(base), "--key", pubkey],
                    ["events", "--node", api(base), "--key", pubkey, "--json"],
                    ["query", "membership", "members", "--args", '{"org": "seller"}',
                     "--node", api(base)]):
        shown = jangbu(*command)
        assert shown.returncode == 0, shown.stderr
        assert not any(ch in shown.stdout for ch in "\x1b\x07\r\x9b"), (command, shown.stdout)
    # The members table shows the label, escaped.
    assert "\\x1b]0;pwned\\x07" in shown.stdout, shown.stdout


def test_invalid_network_init_force_over_a_running_node_is_refused(
        devnet: tuple[Path, int]) -> None:
    """Regression (black-box review): ``--force`` deleted the keys and data of running
    nodes, which went on committing to unlinked files."""
    directory, base = devnet
    before = set(directory.rglob("*"))
    result = jangbu("network", "init", "--dir", directory, "--force")
    assert result.returncode == 1, result.stdout
    assert "a node is running on" in result.stderr and "Traceback" not in result.stderr
    assert set(directory.rglob("*")) >= {p for p in before if p.suffix == ".key"}
    status = jangbu("status", "--node", api(base), "--json")
    assert status.returncode == 0, status.stderr


def test_invalid_float_args_are_refused_before_signing(devnet: tuple[Path, int]) -> None:
    directory, base = devnet
    for args in ('{"x": 1.5}', '{"x": NaN}'):
        result = jangbu("tx", "submit", "--node", api(base), "--key",
                        directory / "seller" / "member.key", "--contract", "clearance",
                        "--action", "create_order", "--args", args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("jangbu: error: cannot sign these arguments"), \
            result.stderr


def test_invalid_devnet_up_port_in_use(tmp_path: Path) -> None:
    base = free_ports(8)
    directory = tmp_path / "net"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base + 5))
        sock.listen()
        result = jangbu("devnet", "up", "--dir", directory, "--base-port", base)
    assert result.returncode == 1
    assert f"port {base + 5} (courier api) is already in use" in result.stderr
    assert not list(directory.glob("*/node.pid"))


def test_devnet_down_is_idempotent(devnet: tuple[Path, int]) -> None:
    directory, base = devnet  # runs last in this module: it stops the shared devnet
    first = jangbu("devnet", "down", "--dir", directory, "--json", "--timeout", "3")
    assert first.returncode == 0, first.stderr
    # "killed" when a node has not exited 3 s after SIGTERM (a lingering event stream
    # can hold up the node's HTTP shutdown); either way every node is gone.
    results = [r["result"] for r in json.loads(first.stdout)]
    assert all(r == "stopped" or r.startswith("killed") for r in results), results
    assert not list(directory.glob("*/node.pid"))
    status = jangbu("devnet", "status", "--dir", directory, "--json")
    assert not any(row["alive"] for row in json.loads(status.stdout))
    second = jangbu("devnet", "down", "--dir", directory, "--json")
    assert second.returncode == 0
    assert [r["result"] for r in json.loads(second.stdout)] == ["not running"] * 4
    unreachable = jangbu("status", "--node", api(base))
    assert unreachable.stderr == f"jangbu: error: cannot reach node at {api(base)}\n"



def test_invalid_devnet_up_param_without_fresh_over_an_existing_network(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    assert jangbu("network", "init", "--dir", directory).returncode == 0
    first = (directory / "genesis.json").read_text()
    result = jangbu("devnet", "up", "--dir", directory, "--param", "min_block_interval_ms=100")
    assert result.returncode == 1
    assert "--param sets genesis" in result.stderr and "--fresh" in result.stderr
    assert (directory / "genesis.json").read_text() == first
    assert not list(directory.glob("*/node.pid"))
