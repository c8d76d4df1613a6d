"""The CLI without a running network: help, keys, network init, and client-side errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cli.presets import PRESETS

from cli_support import free_ports, jangbu


def test_help_lists_every_command() -> None:
    result = jangbu("--help")
    assert result.returncode == 0
    for name in ("keygen", "network", "node", "devnet", "status", "block", "tx", "query",
                 "events", "member"):
        assert name in result.stdout


def test_subcommand_help() -> None:
    for args in (("devnet", "up", "--help"), ("tx", "submit", "--help"),
                 ("events", "--help"), ("member", "add", "--help")):
        result = jangbu(*args)
        assert result.returncode == 0, args
        assert "usage: jangbu" in result.stdout


def test_node_commands_start_without_the_other_commands_modules(tmp_path: Path) -> None:
    """A restarted node begins its catch-up sooner without importing the demos, the bench
    and the client commands (~0.1 s); every other command still finds them."""
    import subprocess
    import sys

    from cli_support import REPO, cli_env

    probe = ("import sys\n"
             "from cli.main import main\n"
             "code = main(sys.argv[1:])\n"
             "print(sorted(m for m in ('cli.demo', 'cli.bench', 'cli.devnet',\n"
             "                         'cli.client_commands') if m in sys.modules))\n")
    missing = tmp_path / "no-such-home"
    node = subprocess.run([sys.executable, "-c", probe, "node", "start", "--home",
                           str(missing)], capture_output=True, text=True, env=cli_env(),
                          cwd=REPO, timeout=30)
    assert node.stdout.strip().splitlines()[-1] == "[]"
    assert "no-such-home" in node.stderr  # and the command still ran, with its error
    other = subprocess.run([sys.executable, "-c", probe, "status", "--help"],
                           capture_output=True, text=True, env=cli_env(), cwd=REPO,
                           timeout=30)
    assert "usage: jangbu status" in other.stdout


def test_keygen_writes_a_0600_key_and_prints_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "alice.key"
    result = jangbu("keygen", "--out", out)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["public"] in result.stdout


def test_invalid_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "alice.key"
    assert jangbu("keygen", "--out", out).returncode == 0
    before = out.read_text()
    result = jangbu("keygen", "--out", out)
    assert result.returncode == 1
    assert result.stderr.startswith("jangbu: error: ")
    assert "refusing to overwrite" in result.stderr
    assert out.read_text() == before


def test_network_init_presets(tmp_path: Path) -> None:
    for preset in ("customs", "livestock"):
        orgs = [org_id for org_id, _, _ in PRESETS[preset]]
        directory = tmp_path / preset
        result = jangbu("network", "init", "--preset", preset, "--dir", directory,
                        "--base-port", 40000)
        assert result.returncode == 0, result.stderr
        genesis = json.loads((directory / "genesis.json").read_text())
        assert [v["name"] for v in genesis["validators"]] == orgs
        for org in orgs:
            home = directory / org
            assert {"config.toml", "genesis.json", "node.key", "member.key"} <= {
                p.name for p in home.iterdir()}
            assert stat.S_IMODE((home / "node.key").stat().st_mode) == 0o600


def test_network_init_custom_orgs(tmp_path: Path) -> None:
    result = jangbu("network", "init", "--orgs", "a:farm,b:regulator+shop", "--contracts",
                    "livestock", "--dir", tmp_path / "n")
    assert result.returncode == 0, result.stderr
    genesis = json.loads((tmp_path / "n" / "genesis.json").read_text())
    assert [o["roles"] for o in genesis["orgs"]] == [["farm"], ["regulator", "shop"]]
    assert [c["name"] for c in genesis["contracts"]] == ["membership", "livestock"]


def test_invalid_network_init_bad_orgs(tmp_path: Path) -> None:
    for spec in ("justaname", "org:", ","):
        result = jangbu("network", "init", "--orgs", spec, "--dir", tmp_path / "n")
        assert result.returncode == 1, spec
        assert result.stderr.startswith("jangbu: error: --orgs"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_network_init_unknown_contract_writes_nothing(tmp_path: Path) -> None:
    result = jangbu("network", "init", "--orgs", "a:customs,b:seller", "--contracts",
                    "nosuch", "--dir", tmp_path / "n")
    assert result.returncode == 1
    assert result.stderr.strip() == "jangbu: error: contract 'nosuch' is not installed"
    assert not (tmp_path / "n").exists()


def test_network_init_names_the_installed_contract_versions(tmp_path: Path) -> None:
    assert jangbu("network", "init", "--dir", tmp_path / "n").returncode == 0
    genesis = json.loads((tmp_path / "n" / "genesis.json").read_text())
    assert genesis["contracts"] == [{"name": "membership", "version": "2"},
                                    {"name": "clearance", "version": "5"}]


def test_invalid_network_init_existing_dir_needs_force(tmp_path: Path) -> None:
    directory = tmp_path / "n"
    assert jangbu("network", "init", "--dir", directory).returncode == 0
    first = (directory / "genesis.json").read_text()
    result = jangbu("network", "init", "--dir", directory)
    assert result.returncode == 1
    assert "--force" in result.stderr
    assert (directory / "genesis.json").read_text() == first
    assert jangbu("network", "init", "--dir", directory, "--force").returncode == 0
    assert (directory / "genesis.json").read_text() != first


def test_invalid_client_commands_unreachable_node(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_ports(1)}"
    for args in (("status",), ("block", "latest"), ("query", "membership", "orgs"),
                 ("events",)):
        result = jangbu(*args, "--node", url)
        assert result.returncode == 1, args
        assert result.stderr == f"jangbu: error: cannot reach node at {url}\n", args


def test_invalid_client_commands_bad_input_fails_before_any_request(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_ports(1)}"  # nothing listens: input errors come first
    key = tmp_path / "m.key"
    assert jangbu("keygen", "--out", key).returncode == 0
    cases = [
        (("tx", "submit", "--contract", "c", "--action", "a", "--args", "{bad",
          "--key", key), "--args is not valid JSON"),
        (("tx", "submit", "--contract", "c", "--action", "a", "--args", "[1]",
          "--key", key), "--args must be a JSON object"),
        (("tx", "submit", "--contract", "c", "--action", "a"), "--key FILE"),
        (("tx", "submit", "--contract", "c", "--action", "a", "--key", tmp_path / "none"),
         "does not exist"),
        (("member", "add", "--pubkey", "ab" * 32, "--key", tmp_path / "none"),
         "does not exist"),
        (("tx", "get", "xyz"), "64 hex"),
        (("query", "membership", "orgs", "--args", "nope"), "--args is not valid JSON"),
    ]
    for args, reason in cases:
        result = jangbu(*args, "--node", url)
        assert result.returncode == 1, args
        assert result.stderr.startswith("jangbu: error: "), (args, result.stderr)
        assert reason in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_invalid_key_file_readable_by_others(tmp_path: Path) -> None:
    key = tmp_path / "m.key"
    assert jangbu("keygen", "--out", key).returncode == 0
    key.chmod(0o644)
    result = jangbu("member", "revoke", "--pubkey", "ab" * 32, "--key", key,
                    "--node", f"http://127.0.0.1:{free_ports(1)}")
    assert result.returncode == 1
    assert f"chmod 600 {key}" in result.stderr


def test_invalid_devnet_status_without_network(tmp_path: Path) -> None:
    result = jangbu("devnet", "status", "--dir", tmp_path / "none")
    assert result.returncode == 1
    assert "no genesis.json" in result.stderr
    down = jangbu("devnet", "down", "--dir", tmp_path / "none")
    assert down.returncode == 0


# --- what the environment refuses: a message, never a traceback (black-box review) --------


def plain_refusal(result: object, needle: str) -> None:
    assert result.returncode != 0, result.stdout  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr, result.stderr  # type: ignore[attr-defined]
    last = result.stderr.splitlines()[-1]  # type: ignore[attr-defined]
    assert last.startswith("jangbu: error: ") and needle in last, result.stderr  # type: ignore[attr-defined]


def test_invalid_paths_are_refused_in_plain_words(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    plain_refusal(jangbu("keygen", "--out", tmp_path / "missing" / "k.key"),
                  "No such file or directory")
    plain_refusal(jangbu("network", "init", "--dir", a_file), "not a directory")
    plain_refusal(jangbu("devnet", "status", "--dir", a_file), "Not a directory")
    plain_refusal(jangbu("demo", "clearance", "--dir", a_file), "Not a directory")


def test_invalid_data_dir_in_a_node_config_is_refused_in_plain_words(tmp_path: Path) -> None:
    assert jangbu("network", "init", "--dir", tmp_path / "n").returncode == 0
    home = tmp_path / "n" / "customs"
    config = home / "config.toml"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    text = config.read_text()
    assert "data_dir" in text
    lines = [f'data_dir = "{blocker}/data"' if line.startswith("data_dir") else line
             for line in text.splitlines()]
    config.write_text("\n".join(lines) + "\n")
    plain_refusal(jangbu("node", "start", "--home", home, timeout=30), "Not a directory")


def test_invalid_node_urls_are_refused_in_plain_words() -> None:
    for url in ("http://127.0.0.1:99999", "http://[::1", "::::", "ftp://x"):
        plain_refusal(jangbu("status", "--node", url), "invalid node URL")


def test_invalid_timeouts_are_refused() -> None:
    for value in ("0", "-1", "nan", "soon"):
        result = jangbu("status", "--timeout", value)
        assert result.returncode == 2 and "--timeout" in result.stderr, (value, result.stderr)


def test_a_refused_network_init_leaves_no_directory(tmp_path: Path) -> None:
    result = jangbu("network", "init", "--dir", tmp_path / "n", "--base-port", "80")
    assert result.returncode == 1 and not (tmp_path / "n").exists()


def test_network_init_param_sets_a_genesis_consensus_parameter(tmp_path: Path) -> None:
    result = jangbu("network", "init", "--dir", tmp_path / "n",
                    "--param", "min_block_interval_ms=100", "--param", "max_block_txs = 500")
    assert result.returncode == 0, result.stderr
    genesis = json.loads((tmp_path / "n" / "genesis.json").read_text())
    assert genesis["consensus"] == {"block_version": 2, "min_block_interval_ms": 100,
                                    "max_block_txs": 500}
    node_copy = json.loads((tmp_path / "n" / "customs" / "genesis.json").read_text())
    assert node_copy == genesis


def test_invalid_network_init_param_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    for param, says in (("min_block_interval", "expected NAME=VALUE"),
                        ("nosuch=1", "--param nosuch: unknown consensus parameter"),
                        ("max_block_txs=many", "'many' is not an integer"),
                        ("max_block_txs=0", "consensus.max_block_txs: must be at least 1"),
                        ("min_block_interval_ms=-5", "must be a non-negative integer"),
                        ("min_block_interval_ms=900", "at most half of timeout_propose_ms")):
        result = jangbu("network", "init", "--dir", tmp_path / "n", "--param", param)
        assert result.returncode == 1, param
        assert says in result.stderr, (param, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "n").exists()
    result = jangbu("network", "init", "--dir", tmp_path / "n", "--param", "max_block_txs=5",
                    "--param", "max_block_txs=6")
    assert result.returncode == 1 and "--param max_block_txs: given twice" in result.stderr
    assert not (tmp_path / "n").exists()


def test_invalid_param_under_force_keeps_the_existing_network(tmp_path: Path) -> None:
    # Regression: init_network deleted the old directory before checking the new genesis,
    # so a refused --param under --force had already lost the network it was to replace.
    directory = tmp_path / "n"
    assert jangbu("network", "init", "--dir", directory).returncode == 0
    first = (directory / "genesis.json").read_text()
    result = jangbu("network", "init", "--dir", directory, "--force",
                    "--param", "max_block_bytes=0")
    assert result.returncode == 1 and "consensus.max_block_bytes" in result.stderr
    assert (directory / "genesis.json").read_text() == first
    assert (directory / "customs" / "node.key").exists()
