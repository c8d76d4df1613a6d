"""``jangbu node start`` refuses to run with a clear one-line reason and exit code 1."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_support import jangbu, start_jangbu, stop_process


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("jangbu: error: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def wait_api(port: int, timeout_s: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=1) as r:
                result: dict[str, object] = json.loads(r.read())
                return result
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_invalid_node_start_missing_home(tmp_path: Path) -> None:
    result = jangbu("node", "start", "--home", tmp_path / "nowhere")
    assert result.returncode == 1
    assert "does not exist" in one_line_error(result.stderr)


def refusal_with_config(network: tuple[Path, int], rewrite: Callable[[bytes], bytes]) -> str:
    """Rewrite the node's config.toml, start it: exit code 1 and the one-line error."""
    config = network[0] / "solo" / "config.toml"
    config.write_bytes(rewrite(config.read_bytes()))
    result = jangbu("node", "start", "--home", network[0] / "solo")
    assert result.returncode == 1
    return one_line_error(result.stderr)


def test_invalid_node_start_bad_config_value(network: tuple[Path, int]) -> None:
    error = refusal_with_config(
        network, lambda text: text.replace(b'log_level = "info"', b'log_level = "loud"'))
    assert "node.log_level" in error


def test_invalid_node_start_config_not_utf8(network: tuple[Path, int]) -> None:
    error = refusal_with_config(
        network, lambda text: text.replace(b'log_level = "info"', b'log_level = "\xff"'))
    assert "config.toml" in error and "UTF-8" in error


def without_state_table(text: bytes) -> bytes:
    """The [state] section written as a plain value instead of a table."""
    head, _, tail = text.partition(b"[state]")
    rest = tail.partition(b"\n[")[2]
    return b'state = "x"\n' + head + (b"[" + rest if rest else b"")


def test_invalid_node_start_config_section_not_a_table(network: tuple[Path, int]) -> None:
    assert "[state]" in refusal_with_config(network, without_state_table)


def test_invalid_node_start_key_readable_by_others(network: tuple[Path, int]) -> None:
    directory, _ = network
    key = directory / "solo" / "node.key"
    key.chmod(0o644)
    result = jangbu("node", "start", "--home", directory / "solo")
    assert result.returncode == 1
    assert f"chmod 600 {key}" in one_line_error(result.stderr)


def test_invalid_node_start_api_port_in_use(network: tuple[Path, int]) -> None:
    directory, base = network
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base + 1))
        sock.listen()
        result = jangbu("node", "start", "--home", directory / "solo", timeout=20)
    assert result.returncode == 1
    error = one_line_error(result.stderr)
    assert str(base + 1) in error and "in use" in error


def test_invalid_node_start_p2p_port_in_use(network: tuple[Path, int]) -> None:
    directory, base = network
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base))
        sock.listen()
        result = jangbu("node", "start", "--home", directory / "solo", timeout=20)
    assert result.returncode == 1
    assert str(base) in one_line_error(result.stderr)


def test_invalid_node_start_twice_on_one_data_directory(network: tuple[Path, int]) -> None:
    directory, base = network
    first = start_jangbu("node", "start", "--home", directory / "solo")
    try:
        wait_api(base + 1)
        second = jangbu("node", "start", "--home", directory / "solo",
                        "--p2p-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0")
        assert second.returncode == 1
        assert "in use" in one_line_error(second.stderr)
        assert first.poll() is None  # the first node is unharmed
    finally:
        stop_process(first)
    assert first.returncode == 0  # SIGTERM is a clean shutdown


@pytest.mark.parametrize(("old", "new", "needle"), [
    # Regression: a misspelt key kept its default without a word (a misspelt section
    # was refused already).
    (b"log_level =", b"log_levle =", "unknown key [node] log_levle"),
    # Regression: a NUL in data_dir was a traceback when the store was opened.
    (b'data_dir = "data"', b'data_dir = "da\\u0000ta"', "node.data_dir: must not contain a NUL"),
], ids=["misspelt-key", "nul-in-path"])
def test_invalid_node_start_config_mistakes(network: tuple[Path, int], old: bytes, new: bytes,
                                            needle: str) -> None:
    assert needle in refusal_with_config(network, lambda text: text.replace(old, new))


def test_invalid_node_start_key_file_binary(network: tuple[Path, int]) -> None:
    directory, _ = network
    key = directory / "solo" / "node.key"
    key.write_bytes(bytes(range(256)))
    result = jangbu("node", "start", "--home", directory / "solo")
    assert result.returncode == 1
    assert f"key file {key} is not a valid jangbu key file" in one_line_error(result.stderr)


def test_invalid_node_start_genesis_not_utf8(network: tuple[Path, int]) -> None:
    directory, _ = network
    genesis = directory / "solo" / "genesis.json"
    genesis.write_bytes(b"\xa9" + genesis.read_bytes())
    result = jangbu("node", "start", "--home", directory / "solo")
    assert result.returncode == 1
    assert f"genesis file {genesis} is not UTF-8" in one_line_error(result.stderr)


def test_invalid_node_start_genesis_role_not_a_name(network: tuple[Path, int]) -> None:
    """Regression: a hand-edited key role that is a list was a TypeError traceback (the
    deploy guide has the coordinator edit genesis and check it by starting a node)."""
    directory, _ = network
    genesis = directory / "solo" / "genesis.json"
    document = json.loads(genesis.read_text())
    document["orgs"][0]["keys"][0]["roles"] = [["customs"]]
    genesis.write_text(json.dumps(document))
    result = jangbu("node", "start", "--home", directory / "solo")
    assert result.returncode == 1
    assert "orgs[0].keys[0].roles" in one_line_error(result.stderr)


def test_invalid_node_start_with_a_member_key_as_node_key(network: tuple[Path, int]) -> None:
    """Review: a member key copied over node.key started a node that no validator links
    with (only a "connected to ourselves" warning hinted at it)."""
    directory, _ = network
    home = directory / "solo"
    key = home / "node.key"
    key.write_bytes((home / "member.key").read_bytes())
    result = jangbu("node", "start", "--home", home)
    assert result.returncode == 1
    assert "'member' key; a node key is needed" in one_line_error(result.stderr)
    # The same seed in a file that names no kind: refused as no validator of genesis.
    payload = json.loads(key.read_text())
    key.write_text(payload["seed"])
    result = jangbu("node", "start", "--home", home)
    assert result.returncode == 1
    assert "is not a validator in" in one_line_error(result.stderr)


def test_invalid_node_start_key_of_another_type(network: tuple[Path, int]) -> None:
    directory, _ = network
    key = directory / "solo" / "node.key"
    payload = json.loads(key.read_text())
    key.write_text(json.dumps({**payload, "type": "rsa"}))
    result = jangbu("node", "start", "--home", directory / "solo")
    assert result.returncode == 1
    assert "holds a 'rsa' key; jangbu keys are Ed25519" in one_line_error(result.stderr)


def test_invalid_node_start_data_dir_that_is_a_file(network: tuple[Path, int]) -> None:
    directory, _ = network
    (directory / "solo" / "data").write_text("not a directory")
    result = jangbu("node", "start", "--home", directory / "solo")
    assert result.returncode == 1
    assert "is a file, not a directory" in one_line_error(result.stderr)


def test_invalid_devnet_dir_that_is_a_node_home(network: tuple[Path, int]) -> None:
    """Review: ``devnet status --dir NET/solo`` said "node home NET/solo/solo does not exist
    (create it with jangbu network init)"."""
    directory, _ = network
    result = jangbu("devnet", "status", "--dir", directory / "solo")
    assert result.returncode == 1
    assert f"is a node's home, not a network directory: give --dir {directory}" in (
        one_line_error(result.stderr))
