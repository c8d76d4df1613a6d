"""Operator mistakes a black-box review of the CLI found answered with a traceback, a
misleading success or a misleading failure. Each gets one ``jangbu: error:`` line and an
exit code != 0, or, where the command did its work, no error at all."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_support import REPO, cli_env, free_ports, jangbu


def one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jangbu: error: "), result.stderr
    assert needle in lines[0], lines[0]


class _NotJangbu(BaseHTTPRequestHandler):
    """Another web server on the port an operator gave: 200 with some other body."""

    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[b"hello", b"[1, 2]", b"\xa9\xff not utf-8", b'{"a": 1}', b""],
                ids=["text", "json-list", "binary", "json-object", "empty"])
def other_server(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_NotJangbu,), {"body": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_invalid_client_commands_against_another_server(other_server: str,
                                                        tmp_path: Path) -> None:
    """Regression: tracebacks (AttributeError, TypeError, UnicodeDecodeError), and
    ``status --json`` printed ``null`` with exit code 0."""
    key = tmp_path / "m.key"
    assert jangbu("keygen", "--out", key).returncode == 0
    for args in (("status",), ("status", "--json"), ("block", "1"), ("block", "3", "--json"),
                 ("query", "membership", "orgs"), ("tx", "get", "ab" * 32),
                 ("tx", "submit", "--contract", "membership", "--action", "add_member",
                  "--key", key)):
        one_line_error(jangbu(*args, "--node", other_server),
                       "does not answer as a jangbu node API")


def test_invalid_node_url_with_a_query_or_fragment() -> None:
    url = f"http://127.0.0.1:{free_ports(1)}"
    for given in (url + "?x=1", url + "#a", url + "/?x=1"):
        one_line_error(jangbu("status", "--node", given), "invalid node URL")


def test_invalid_args_nested_too_deeply() -> None:
    deep = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    url = f"http://127.0.0.1:{free_ports(1)}"
    one_line_error(jangbu("query", "membership", "orgs", "--args", deep, "--node", url),
                   "--args is nested too deeply")


def test_invalid_key_file_that_is_binary_or_a_directory(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_ports(1)}"
    binary = tmp_path / "g.key"
    binary.write_bytes(bytes(range(256)))
    binary.chmod(0o600)
    one_line_error(jangbu("member", "revoke", "--pubkey", "ab" * 32, "--key", binary,
                          "--node", url), "not a valid jangbu key file")
    directory = tmp_path / "dir.key"
    directory.mkdir()
    one_line_error(jangbu("member", "revoke", "--pubkey", "ab" * 32, "--key", directory,
                          "--node", url), "is a directory")


@pytest.mark.parametrize("text", ["[]", "{}", "\xa9 bytes", '{"chain_id": "c"}'])
def test_invalid_demo_genesis(tmp_path: Path, text: str) -> None:
    """Regression: AttributeError / KeyError / UnicodeDecodeError tracebacks, and no JSON
    summary under --json."""
    (tmp_path / "genesis.json").write_bytes(text.encode("latin-1"))
    one_line_error(jangbu("demo", "clearance", "--dir", tmp_path), "genesis")
    result = jangbu("demo", "clearance", "--dir", tmp_path, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is False and "genesis" in summary["reason"], summary


@pytest.mark.parametrize("command", ["up", "down"])
@pytest.mark.parametrize("value", ["nan", "-5", "inf"])
def test_invalid_devnet_timeout(tmp_path: Path, command: str, value: str) -> None:
    """Regression: ``devnet down --timeout nan`` SIGKILLed every node at once, exit 0."""
    result = jangbu("devnet", command, "--dir", tmp_path, "--timeout", value)
    assert result.returncode == 2 and "--timeout" in result.stderr, result.stderr


def test_devnet_timeout_zero() -> None:
    """``up`` waits for something, so 0 is refused; ``down --timeout 0`` kills at once."""
    from cli.client_commands import grace_seconds, positive_seconds

    assert grace_seconds("0") == 0.0
    with pytest.raises(Exception, match="more than 0"):
        positive_seconds("0")


def piped_to_true(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``jangbu ARGS | true`` (the reader gone before jangbu writes), with pipefail."""
    command = " ".join(f"'{a}'" for a in (sys.executable, "-m", "cli.main", *map(str, args)))
    return subprocess.run(["bash", "-c", f"set -o pipefail; {command} | true"],
                          capture_output=True, text=True, env=cli_env(), cwd=REPO,
                          timeout=60)


def test_a_closed_stdout_does_not_fail_a_command_that_did_its_work(tmp_path: Path) -> None:
    """Regression: ``--help | true`` was a BrokenPipeError traceback; ``keygen | true``
    and ``network init | true`` said "Broken pipe" and exited 1 after doing their work."""
    for args in (("--help",), ("keygen", "--out", tmp_path / "k.key"),
                 ("network", "init", "--dir", tmp_path / "n")):
        result = piped_to_true(*args)
        assert (result.returncode, result.stderr) == (0, ""), (args, result.stderr)
    assert (tmp_path / "k.key").exists() and (tmp_path / "n" / "genesis.json").exists()


def test_ctrl_c_during_the_imports_is_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: Ctrl-C in the first ~0.25 s (the commands' imports, outside the
    handler around the command itself) printed a KeyboardInterrupt traceback."""
    from cli import main as cli_main

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "_load_extra_commands", interrupted)
    assert cli_main.main(["status"]) == 130


class _EndlessEvents(BaseHTTPRequestHandler):
    """An event stream that never ends: one record every 20 ms."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        height = 0
        try:
            self.wfile.write(b": live\n\n")
            while True:
                height += 1
                record = {"height": height, "tx": "ab" * 32, "contract": "c", "type": "t",
                          "attrs": {}}
                self.wfile.write(b"data: " + json.dumps(record).encode() + b"\n\n")
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:
            return

    def log_message(self, *args: object) -> None:
        pass


def test_events_follow_into_a_reader_that_leaves_stops() -> None:
    """Review: with a closed stdout swallowed, ``events --follow | head -n 2`` would have
    run forever, printing into /dev/null."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessEvents)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        command = " ".join(f"'{a}'" for a in (sys.executable, "-m", "cli.main", "events",
                                               "--follow", "--node", url))
        result = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -n 2"],
                                capture_output=True, text=True, env=cli_env(), cwd=REPO,
                                timeout=30)
        assert result.returncode == 0 and result.stdout.count("\n") == 2, result
        assert "Traceback" not in result.stderr, result.stderr
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_node_with_a_damaged_store_stops_with_one_error_in_its_log_format(
        tmp_path: Path, log_format: str) -> None:
    """Regression (operator review): with --log-format json the node's last line, the one
    saying why it stopped, was the only plain-text line of the log; and a store whose
    CURRENT was lost was replaced by an empty one (the node started at height 0)."""
    base = free_ports(2)
    result = jangbu("network", "init", "--orgs", "solo:customs", "--contracts", "clearance",
                    "--dir", tmp_path / "n", "--base-port", base)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "n" / "solo" / "data"
    data.mkdir()
    (data / "000005.ldb").write_bytes(b"a table of a store whose CURRENT was lost")
    result = jangbu("node", "start", "--home", tmp_path / "n" / "solo",
                    "--log-format", log_format)
    assert result.returncode == 1, result.stderr
    assert (data / "000005.ldb").exists() and not (data / "CURRENT").exists()
    assert "Traceback" not in result.stderr, result.stderr
    if log_format == "text":
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("jangbu: error: ") and "no CURRENT file" in last, last
        return
    lines = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert lines[-1]["level"] == "critical" and "no CURRENT file" in lines[-1]["msg"], lines


def test_json_log_lines_carry_the_traceback() -> None:
    """Regression (operator review): the JSON formatter dropped exc_info, so a node that
    stopped on an internal error logged no traceback under --log-format json."""
    import logging

    from node.app import JsonFormatter

    try:
        raise OSError(28, "No space left on device")
    except OSError:
        record = logging.LogRecord("jangbu.driver", logging.CRITICAL, __file__, 1,
                                   "consensus stopped at height %d", (7,), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "consensus stopped at height 7"
    assert line["exc"].startswith("Traceback") and "No space left on device" in line["exc"]


@pytest.mark.parametrize("value", ["301", "400", "0", "nan"])
def test_invalid_wait_timeout_is_refused_before_anything_is_sent(value: str) -> None:
    """Regression (customs review): ``tx submit --wait-timeout 400`` passed the CLI (it
    took up to 86,400) and failed at the node with E_ARGS, the transaction not submitted."""
    result = jangbu("tx", "submit", "--node", "http://127.0.0.1:9", "--contract", "clearance",
                    "--action", "cancel", "--args", "{}", "--wait-timeout", value)
    assert result.returncode == 2 and "--wait-timeout" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_longest_wait_timeout_the_node_allows_is_taken() -> None:
    from cli.client_commands import wait_seconds
    from node.defaults import MAX_WAIT_COMMIT_S

    assert wait_seconds(str(MAX_WAIT_COMMIT_S)) == MAX_WAIT_COMMIT_S


class _Answering(BaseHTTPRequestHandler):
    """A server giving one fixed answer to every request."""

    status = 404
    body = b""
    content_type = "text/html"

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.do_GET()


class _TimingOut(_Answering):
    """A node whose status answers and whose submits all time out (504 E_TIMEOUT)."""

    def do_GET(self) -> None:
        body = json.dumps({"chain_id": "c", "height": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"code": "E_TIMEOUT",
                           "message": "not committed within the timeout"}).encode()
        self.send_response(504)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serving(status: int, body: bytes, content_type: str) -> ThreadingHTTPServer:
    handler = type("Handler", (_Answering,), {"status": status, "body": body,
                                             "content_type": content_type})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_invalid_events_from_another_server_is_one_line() -> None:
    """Review: ``events`` printed the other server's HTML page, ten lines of it."""
    page = b"<!DOCTYPE HTML>\n<html>\n<head>\n<title>Error</title>\n</head>\n</html>\n"
    server = serving(404, page, "text/html")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        one_line_error(jangbu("events", "--node", url), "does not answer as a jangbu node API")
    finally:
        server.shutdown()
        server.server_close()


def test_a_submit_that_times_out_names_its_transaction(tmp_path: Path) -> None:
    """Review: on E_TIMEOUT the transaction (which later committed) was named nowhere:
    the message said ``{hash}`` literally and ``--json`` printed nothing."""
    key = tmp_path / "m.key"
    assert jangbu("keygen", "--out", key).returncode == 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TimingOut)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = ("tx", "submit", "--node", url, "--key", key, "--contract", "membership",
                "--action", "add_member", "--args", "{}")
        plain = jangbu(*args)
        as_json = jangbu(*args, "--json")
    finally:
        server.shutdown()
        server.server_close()
    one_line_error(plain, "still pending: jangbu tx get ")
    tx_hash = plain.stderr.strip().rsplit(" ", 1)[1]
    assert len(tx_hash) == 64 and f"transaction {tx_hash} not committed" in plain.stderr
    assert as_json.returncode == 1
    printed = json.loads(as_json.stdout)
    assert printed["status"] == "pending" and printed["code"] == "E_TIMEOUT"
    assert len(printed["hash"]) == 64


def test_network_init_contracts_without_orgs_is_refused(tmp_path: Path) -> None:
    """Review: ``--contracts livestock`` without ``--orgs`` was ignored silently (the
    customs preset's contracts were written)."""
    result = jangbu("network", "init", "--dir", tmp_path / "n", "--contracts", "livestock")
    one_line_error(result, "--contracts needs --orgs")
    assert not (tmp_path / "n" / "genesis.json").exists()


@pytest.mark.parametrize("group", ["network", "node", "demo", "devnet", "tx", "member"])
def test_a_command_group_without_its_subcommand_prints_its_own_help(group: str) -> None:
    result = jangbu(group)
    assert result.returncode == 2
    assert result.stdout.startswith(f"usage: jangbu {group} "), result.stdout[:200]
