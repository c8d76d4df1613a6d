"""The page follows every event type the contracts emit.

Why: the page's event streams (``EventSource``) dispatch only the named types it listens
for, so a type missing from ``EVENT_TYPES`` in node/web/app.js is silently never seen. A
review found ``combined_taxation_undone`` missing: a parcel page kept showing a duty that
had been withdrawn until it was reloaded (and ``transfer_refused``, ``update_rules``).
"""

from __future__ import annotations

import re
from pathlib import Path

from contracts.clearance import states as clearance_states
from contracts.livestock import contract as livestock

ROOT = Path(__file__).resolve().parents[2]


def page_event_types() -> set[str]:
    script = (ROOT / "node" / "web" / "app.js").read_text(encoding="utf-8")
    found = re.search(r"const EVENT_TYPES = \[(.*?)\];", script, re.S)
    assert found is not None, "EVENT_TYPES not found in app.js"
    return set(re.findall(r'"([a-z_]+)"', found.group(1)))


def emitted_types() -> set[str]:
    """Every event type a contract can emit: a parcel's transitions and each livestock
    action (``report`` and ``transition`` emit the action's name), and the names emitted
    by hand (``emit("...")``, ``report(ctx, "...")``)."""
    names = set(livestock.ACTIONS) | {edge.action for edge in clearance_states.EDGES}
    for source in (ROOT / "contracts").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        names |= set(re.findall(r'(?:emit|report)\(\s*(?:ctx,\s*)?"([a-z_]+)"', text))
    names |= {"member_added", "member_revoked", "violation"}
    return names


def test_the_page_listens_for_every_event_type_a_contract_emits() -> None:
    missing = emitted_types() - page_event_types()
    assert not missing, f"add to EVENT_TYPES in node/web/app.js: {sorted(missing)}"


def test_every_history_entry_of_a_parcel_reads_in_both_languages() -> None:
    """Review: a reassessment showed as "reassess — … · COMBINED_TAXATION", raw in both
    languages. Every action a parcel's history records has an ``act_`` text and every reason
    code it records an ``hreason_`` text, in English and in Korean."""
    texts = (ROOT / "node" / "web" / "i18n.js").read_text(encoding="utf-8")
    source = (ROOT / "contracts" / "clearance" / "contract.py").read_text(encoding="utf-8")
    actions = {edge.action for edge in clearance_states.EDGES} | set(
        re.findall(r'self\.(?:record|transition)\([^)]*?"([a-z_]+)"', source))
    reasons = set(re.findall(r'"reason": "([A-Z_]+)"', source))
    assert "reassess" in actions and "COMBINED_TAXATION" in reasons
    missing = [key for key in [f"act_{a}" for a in sorted(actions)]
               + [f"hreason_{r}" for r in sorted(reasons)]
               if len(re.findall(rf"^\s+{key}:", texts, re.M)) < 2]
    assert not missing, f"add to node/web/i18n.js (en and ko): {missing}"
