"""The import directions of DESIGN.md section 2, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "consensus": {"node", "contracts", "cli", "asyncio", "aiohttp", "plyvel", "time", "socket"},
    "contracts": {"node", "consensus", "cli", "asyncio", "aiohttp", "plyvel", "time", "random",
                  "socket", "os", "secrets", "uuid"},
    "node": {"cli"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


# Import machinery, not contract code: it picks the compiled build of the clearance
# contract or its source before those modules load (reads the environment and the source
# files' digests). No contract code may call it (test below).
BUILD_CHOICE = {Path("contracts/clearance/compiled.py"): {"os"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_design(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        allowed = BUILD_CHOICE.get(path.relative_to(ROOT), set())
        bad = imported_roots(path) & FORBIDDEN[package] - allowed
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_only_the_package_init_imports_the_build_choice():
    """So no contract code reaches the environment or the disk through it."""
    importers = []
    for path in sorted((ROOT / "contracts").rglob("*.py")):
        text = path.read_text()
        if "import compiled" in text or "clearance.compiled" in text:
            importers.append(str(path.relative_to(ROOT)))
    assert importers == ["contracts/clearance/__init__.py"]


def test_contracts_never_read_the_wall_clock():
    """datetime's calendar maths is pure; its clock is not (block time is the only clock)."""
    offenders = []
    for path in sorted((ROOT / "contracts").rglob("*.py")):
        text = path.read_text()
        for call in (".now(", ".today(", ".utcnow(", "time.time("):
            if call in text:
                offenders.append(f"{path.relative_to(ROOT)}: {call}")
    assert not offenders, "\n".join(offenders)
