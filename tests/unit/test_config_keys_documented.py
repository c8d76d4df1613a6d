"""docs/operations.md section 10 lists every key config.toml takes.

Regression (operator review): the error for an unknown key sent operators to
docs/operations.md for the keys of each section, and it listed none of [mempool], and not
all of [api] or [node].
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r'get\("(node|p2p|api|mempool|state)", "([a-z_]+)"')


def test_every_key_the_config_reads_is_in_the_operations_guide() -> None:
    keys = READ.findall((ROOT / "node" / "config.py").read_text(encoding="utf-8"))
    assert len(keys) >= 18, keys
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = guide[guide.index("## 10. Configuration keys"):]
    missing = [f"[{s}] {k}" for s, k in keys if f"| `[{s}] {k}` |" not in section]
    assert not missing, missing
