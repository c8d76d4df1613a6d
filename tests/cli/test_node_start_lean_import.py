"""``jangbu node start`` imports the node without aiohttp reading the CA bundle file
(node/lean_import.py): 0.05-0.1 s of every start. In fresh interpreters: what aiohttp reads
at its import is the point."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from cli_support import REPO, cli_env

PROBE = (
    "import json, os, ssl, sys\n"
    "from node.lean_import import without_eager_ca_bundle\n"
    "{before}"
    "with without_eager_ca_bundle():\n"
    "    inside = os.environ.get('SSL_CERT_FILE')\n"
    "    import aiohttp.connector as c\n"
    "print(json.dumps({{'inside': inside, 'after': os.environ.get('SSL_CERT_FILE'),\n"
    "    'aiohttp_cas': c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'],\n"
    "    'default_cas': ssl.create_default_context().cert_store_stats()['x509_ca']}}))\n"
)


def probe(env_overrides: dict[str, str], before: str = "") -> dict[str, object]:
    env = cli_env()
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        env.pop(name, None)
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)],
                         capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def system_bundle() -> Path | None:
    path = ssl.get_default_verify_paths().openssl_cafile
    return Path(path) if path and os.path.isfile(path) else None


def test_aiohttp_reads_no_ca_bundle_and_the_environment_is_restored() -> None:
    result = probe({})
    assert result["inside"] == os.devnull
    assert result["after"] is None  # unset again: the process and its children see no change
    assert result["aiohttp_cas"] == 0
    if system_bundle() is not None:  # a context made afterwards reads the bundle as usual
        assert isinstance(result["default_cas"], int) and result["default_cas"] > 0


def test_an_operators_ca_file_is_put_back_and_read_by_later_contexts(tmp_path: Path) -> None:
    bundle = system_bundle()
    if bundle is None:
        pytest.skip("no system CA bundle to take a certificate from")
    text = bundle.read_text()
    first = text[:text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    one = tmp_path / "one-ca.pem"
    one.write_text(first[first.index("-----BEGIN CERTIFICATE-----"):] + "\n")
    result = probe({"SSL_CERT_FILE": str(one)})
    assert result["inside"] == os.devnull and result["after"] == str(one)
    assert result["aiohttp_cas"] == 0
    assert result["default_cas"] == 1  # theirs, read as before


def test_nothing_changes_once_aiohttp_is_imported() -> None:
    result = probe({}, before="import aiohttp\n")
    assert result["inside"] is None
    if system_bundle() is not None:
        assert isinstance(result["aiohttp_cas"], int) and result["aiohttp_cas"] > 0


def test_node_start_imports_the_node_inside_it(tmp_path: Path) -> None:
    """``jangbu node start`` itself: the node's modules are imported within the context
    (a home without its genesis file stops the start right after the import)."""
    from cli.network import init_network
    from cli.presets import CONTRACTS, PRESETS

    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="lean-import", base_port=40360)
    home = tmp_path / "net" / "customs"
    (home / "genesis.json").unlink()
    code = (
        "import contextlib, json, os, sys\n"
        "import node.lean_import as lean\n"
        "seen = {}\n"
        "real = lean.without_eager_ca_bundle\n"
        "@contextlib.contextmanager\n"
        "def spy():\n"
        "    seen['app_before'] = 'node.app' in sys.modules\n"
        "    with real():\n"
        "        yield\n"
        "    seen['app_after'] = 'node.app' in sys.modules\n"
        "lean.without_eager_ca_bundle = spy\n"
        "import cli.main\n"
        f"seen['exit'] = cli.main.main(['node', 'start', '--home', {str(home)!r}])\n"
        "import aiohttp.connector as c\n"
        "seen['cas'] = c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca']\n"
        "print(json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=cli_env(), cwd=REPO)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"app_before": False, "app_after": True, "exit": 1, "cas": 0}, out.stderr
