"""Network presets for ``jangbu network init``: which organisations, with which roles."""

from __future__ import annotations

PRESETS: dict[str, list[tuple[str, str, list[str]]]] = {
    # (org id, display name, roles)
    "customs": [
        ("customs", "Korea Customs Service", ["customs"]),
        ("seller", "Overseas e-commerce seller", ["seller"]),
        ("courier", "Express courier", ["courier"]),
        ("buyer", "Buyer platform", ["buyer"]),
    ],
    "livestock": [
        ("farm-a", "Hanwoo farm A", ["farm"]),
        ("farm-b", "Hanwoo farm B", ["farm"]),
        ("slaughterhouse", "Slaughterhouse", ["slaughterhouse"]),
        ("packer-shop", "Meat packer and shop", ["packer", "shop"]),
        ("regulator", "Agriculture ministry", ["regulator"]),
    ],
}

CONTRACTS: dict[str, list[str]] = {
    "customs": ["membership", "clearance"],
    "livestock": ["membership", "livestock"],
}

BUSINESS_IDS: dict[str, list[str]] = {
    "farm-a": ["100001"],
    "farm-b": ["100002"],
    "slaughterhouse": ["2001"],
    "packer-shop": ["3001", "4001"],
}


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
