"""The clearance contract compiled by mypyc, and the choice between it and the source.

The two builds must agree byte for byte (nodes of one network may run either), a build
must never run in place of a source edited since (contracts/clearance/compiled.py), and CI
must run the compiled one, as production does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.clearance import compiled

ROOT = Path(__file__).resolve().parents[2]
DIFF = Path(__file__).with_name("compiled_diff.py")
PURE = {compiled.PURE_ENV: "1"}
built = pytest.mark.skipif(
    not compiled.is_compiled() and not os.environ.get("CI"),
    reason=f"clearance contract not compiled here ({compiled.BUILD}); CI requires it")


def run(code: list[str], env: dict[str, str] | None = None,
        pythonpath: list[Path] | None = None, cwd: Path = ROOT) -> str:
    full = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    full |= env or {}
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    done = subprocess.run([sys.executable, *code], env=full, capture_output=True, text=True,
                          timeout=240, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def copy_of_contracts(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "contracts", tmp_path / "contracts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "contracts"


@built
def test_ci_and_this_install_run_the_compiled_build():
    if os.environ.get(compiled.PURE_ENV) == "1":
        pytest.skip(f"{compiled.PURE_ENV}=1 asks for the source")
    assert compiled.is_compiled(), compiled.BUILD
    import contracts.clearance.contract as contract

    assert not contract.__file__.endswith(".py")


@built
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_builds_give_the_same_receipts_and_state(seed):
    """300 seeded random workflows over four parcels of one buyer (all three rules
    versions, refusals included): one digest of every receipt and the final state."""
    args = [str(DIFF), "--seed", str(seed), "--workflows", "300"]
    fast = run(args).split()
    slow = run(args, PURE).split()
    assert fast[0] == "compiled" and slow[0] == "source"
    assert fast[1:] == slow[1:]
    assert int(fast[3]) > 1000  # enough calls succeeded to reach far into the workflow


@built
def test_the_clearance_tests_pass_on_the_source_build_too():
    """The suite runs the compiled build; a machine without a compiler runs the source."""
    tests = sorted(str(p) for p in Path(__file__).parent.glob("test_clearance*.py"))
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests], PURE)
    assert " passed" in out and "failed" not in out


@built
def test_an_edited_source_runs_instead_of_its_stale_build(tmp_path):
    package = copy_of_contracts(tmp_path)
    probe = ["-c", "import contracts.clearance as c, contracts.clearance.duty as d; "
                   "print(c.compiled.BUILD); print(d.__file__)"]
    path = [tmp_path, ROOT]  # the copy first (and run from it: -c puts the cwd first)
    build, module = run(probe, pythonpath=path, cwd=tmp_path).splitlines()
    assert build == "compiled (mypyc)" and not module.endswith(".py")
    assert module.startswith(str(tmp_path))  # the copy, not this checkout
    build, module = run(probe, PURE, pythonpath=path, cwd=tmp_path).splitlines()
    assert build == f"source ({compiled.PURE_ENV}=1)" and module.endswith("duty.py")
    duty = package / "clearance" / "duty.py"
    duty.write_text(duty.read_text() + "\n# edited after the build\n")
    build, module = run(probe, pythonpath=path, cwd=tmp_path).splitlines()
    assert build.startswith("source (clearance/duty.py changed since the build")
    assert module.endswith("duty.py")
    contract = ["-c", "import contracts.clearance.contract as c; print(c.__file__)"]
    # All or none: the other modules of the group run from their sources too.
    assert run(contract, pythonpath=path, cwd=tmp_path).strip().endswith("contract.py")


PROBE = ["-c", "import contracts.clearance as c, contracts.clearance.rules as r; "
               "print(c.compiled.BUILD); print(r.__file__); print(r.MAX_TEXT)"]


@built
def test_a_partial_build_is_checked_too_and_loses_to_the_sources(tmp_path):
    """Found in review: with the contract's own compiled file gone, the rest of the build
    ran unchecked beside the contract's source (an edited constant ignored)."""
    package = copy_of_contracts(tmp_path)
    for shim in (package / "clearance").glob("contract.cpython-*"):
        shim.unlink()
    rules = package / "clearance" / "rules.py"
    rules.write_text(rules.read_text().replace("MAX_TEXT: Final = 256", "MAX_TEXT: Final = 9"))
    build, module, max_text = run(PROBE, pythonpath=[tmp_path, ROOT], cwd=tmp_path).splitlines()
    assert build.startswith("source (")
    assert module.endswith("rules.py") and max_text == "9"


@built
def test_a_change_to_what_the_contract_imports_also_runs_the_sources(tmp_path):
    """Found in review: compiled code relies on the declared types of the modules it
    imports (contracts/sdk.py, membership, queries), so a change there also stales it."""
    package = copy_of_contracts(tmp_path)
    sdk = package / "sdk.py"
    sdk.write_text(sdk.read_text() + "\n# changed after the build\n")
    build, module, _ = run(PROBE, pythonpath=[tmp_path, ROOT], cwd=tmp_path).splitlines()
    assert build.startswith("source (sdk.py changed since the build")
    assert module.endswith("rules.py")


def test_the_stamp_the_build_writes_holds_the_digests_it_is_compared_with(tmp_path):
    digests = compiled.source_digests()
    assert {f"clearance/{name}.py" for name in compiled.MODULES} < set(digests)
    assert {"sdk.py", "membership.py", "clearance/queries.py"} < set(digests)
    assert "clearance/build_stamp.py" not in digests
    namespace: dict[str, object] = {}
    exec(compiled.stamp_source(digests), namespace)  # our own generated text
    assert namespace["SOURCES"] == digests


def test_without_a_build_the_source_runs(tmp_path):
    for name in compiled.MODULES:
        (tmp_path / f"{name}.py").write_text("")
    assert compiled.choose(tmp_path) == "source (not compiled)"


def test_make_reinstalls_when_a_compiled_source_changes():
    """`make test` and `make demo` compile again after an edit (Makefile COMPILED_SOURCES)."""
    makefile = (ROOT / "Makefile").read_text()
    listed = makefile.split("COMPILED_SOURCES :=", 1)[1].split("\n", 1)[0]
    assert "setup.py" in listed and "find contracts -name '*.py'" in listed
