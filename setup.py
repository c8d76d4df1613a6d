"""Build hook for the optional compiled parts (everything else is pyproject.toml).

``optional=True``: where no C compiler, Python headers or OpenSSL headers exist, the build
skips that extension with a warning and jangbu runs the pure-Python code, which gives the
same bytes (consensus/canonical.py, node/state_tree.py) or the same verdicts
(node/sigcheck.py). Separate modules, so a machine without OpenSSL's headers still gets
the others.

The clearance contract's modules are compiled by mypyc (a build requirement in
pyproject.toml) into one group; contracts/clearance/compiled.py decides at import time
whether that build runs (it must match the sources) or the source does. ``JANGBU_NO_MYPYC=1``
skips that compilation (and removes an earlier build from an editable tree).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent


def clearance_compiled() -> list[Extension]:
    """The clearance contract compiled by mypyc, or nothing (with a warning) if it cannot be.

    Writes ``contracts/clearance/build_stamp.py`` first, the SHA-256 of each source of
    ``contracts/`` and the compiler's version, and compiles it with the group: the compiled
    build then carries the digests of the sources it was made from.
    """
    package = ROOT / "contracts" / "clearance"
    # By its path, which has no effect: importing the package would import the contract
    # and its dependencies, which a build environment does not have.
    spec = importlib.util.spec_from_file_location("_jangbu_build_compiled",
                                                  package / "compiled.py")
    assert spec is not None and spec.loader is not None
    compiled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compiled)
    if os.environ.get("JANGBU_NO_MYPYC") == "1":
        # Asked for the source: an earlier build left in this tree must not run instead.
        for name in (*compiled.MODULES, compiled.STAMP, compiled.GROUP_LIBRARY):
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                (package / f"{name}{suffix}").unlink(missing_ok=True)
        return []
    try:
        from mypy.version import __version__ as mypy_version
        from mypyc.build import mypycify

        (package / f"{compiled.STAMP}.py").write_text(compiled.stamp_source(
            compiled.source_digests(package), f"mypyc {mypy_version}"))
        paths = [f"contracts/clearance/{name}.py"
                 for name in (*compiled.MODULES, compiled.STAMP)]
        extensions: list[Extension] = mypycify(
            paths, group_name="contracts.clearance._compiled", opt_level="3")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error: never fail the
        # install for it, the source runs (a missing mypy, a read-only tree: the same)
        print(f"warning: clearance contract not compiled ({exc!r}); the source runs",
              file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True
    return extensions


setup(
    # The README the systemd unit's Documentation= names (deploy/systemd): a venv at
    # /opt/jangbu gets it as /opt/jangbu/share/doc/jangbu/README.md (operator review: the
    # path named nothing).
    data_files=[("share/doc/jangbu", ["README.md"])],
    ext_modules=[
        Extension("consensus._speedups", ["consensus/_speedups.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("node._tree_speedups", ["node/_tree_speedups.c"], optional=True,
                  extra_compile_args=["-O2"], libraries=["crypto"]),
        # Needs nothing beyond the C compiler: it calls the libsodium PyNaCl loaded.
        Extension("node._sigcheck", ["node/_sigcheck.c", "node/_ed25519_keyed.c"],
                  depends=["node/_ed25519_keyed.h"], optional=True,
                  extra_compile_args=["-O2"], libraries=["dl"]),
        # Calls the LevelDB plyvel loaded; OpenSSL's SHA-256 as the tree module does.
        Extension("node._state_scan", ["node/_state_scan.c"], optional=True,
                  extra_compile_args=["-O2"], libraries=["crypto", "dl"]),
        *clearance_compiled(),
    ],
)
