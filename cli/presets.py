"""Network presets for ``jangbu network init``: which organisations, with which roles."""

from __future__ import annotations

from contracts.livestock.scenario import DEMO_ORGS

LIVESTOCK_NAMES: dict[str, str] = {
    "farm-a": "Hanwoo farm A",
    "farm-b": "Hanwoo farm B",
    "plant": "Slaughterhouse",
    "meatco": "Meat packer and shop",
    "mafra": "Agriculture ministry (MAFRA)",
}

PRESETS: dict[str, list[tuple[str, str, list[str]]]] = {
    # (org id, display name, roles)
    "customs": [
        ("customs", "Korea Customs Service", ["customs"]),
        ("seller", "Overseas e-commerce seller", ["seller"]),
        ("courier", "Express courier", ["courier"]),
        ("buyer", "Buyer platform", ["buyer"]),
    ],
    # The organisations of the livestock demo (contracts/livestock/scenario.py).
    "livestock": [(str(org["id"]), LIVESTOCK_NAMES.get(str(org["id"]), str(org["id"])),
                   list(org["roles"])) for org in DEMO_ORGS],
}

CONTRACTS: dict[str, list[str]] = {
    "customs": ["membership", "clearance"],
    "livestock": ["membership", "livestock"],
}

BUSINESS_IDS: dict[str, list[str]] = {
    str(org["id"]): list(org["business_ids"]) for org in DEMO_ORGS if org["business_ids"]
}
"""Farm numbers and business codes by organisation id (those of the livestock demo)."""


def parse_orgs(spec: str) -> list[tuple[str, str, list[str]]]:
    """``--orgs "a:role1+role2,b:role3"`` -> [(id, name, roles)]."""
    orgs = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" not in part:
            raise ValueError(f"--orgs: {part!r} must look like org:role1+role2")
        org_id, roles = part.split(":", 1)
        role_list = [r for r in roles.split("+") if r]
        if not role_list:
            raise ValueError(f"--orgs: {org_id!r} needs at least one role")
        orgs.append((org_id, org_id, role_list))
    if not orgs:
        raise ValueError("--orgs: no organisations given")
    return orgs
