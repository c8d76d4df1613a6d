"""consensus/ is sans-I/O: it must not import anything that does I/O, time or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

CONSENSUS = Path(__file__).resolve().parents[2] / "consensus"
FORBIDDEN = {
    "asyncio", "socket", "time", "random", "plyvel", "aiohttp", "node", "contracts",
    "threading", "subprocess", "os", "datetime", "selectors",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_consensus_imports_no_io() -> None:
    files = sorted(CONSENSUS.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {sorted(bad)}"
