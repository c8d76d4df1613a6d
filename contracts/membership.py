"""The ``membership`` system contract: organisations, their roles, member keys and devices.

Genesis seeds it (every organisation with its roles, its admin and member keys, node keys
and devices). After that the rule is simple and local: **only an admin of an organisation
adds or revokes that organisation's keys**, and a key can never be given a role its
organisation does not hold. Every other contract asks this one (through
``Context.lookup_member``) who signed a transaction and what they may do.

State layout (namespace ``membership``):

* ``org/<org_id>`` -> ``{"id", "name", "roles": [...], "business_ids": [...]}``
* ``key/<pubkey hex>`` -> ``{"org", "roles": [...], "kind", "revoked", "label"}``
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from contracts.sdk import (
    E_ARGS,
    E_EXISTS,
    E_NOT_FOUND,
    E_ROLE,
    E_UNKNOWN_ACTION,
    E_UNKNOWN_QUERY,
    Call,
    Context,
    Contract,
    ContractError,
    Member,
    QueryContext,
    StateReader,
    arg_str,
)

NAME = "membership"
ADMIN = "admin"
DEVICE = "device"
KINDS = ("member", "device", "node")

PUBKEY_HEX = re.compile(r"[0-9a-f]{64}")
ORG_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ROLE = re.compile(r"[a-z][a-z0-9_]{0,31}")
E_REVOKED = "E_REVOKED"
E_LAST_ADMIN = "E_LAST_ADMIN"


def org_key(org_id: str) -> str:
    return f"org/{org_id}"


def member_key(pubkey: bytes) -> str:
    return f"key/{pubkey.hex()}"


def member_from_record(pubkey: bytes, record: Mapping[str, Any]) -> Member:
    """Turn a stored key record into the :class:`Member` contracts see."""
    return Member(
        pubkey=pubkey,
        org=str(record["org"]),
        roles=tuple(record["roles"]),
        kind=str(record["kind"]),
        revoked=bool(record["revoked"]),
        label=str(record.get("label", "")),
    )


def lookup_member(reader: StateReader, pubkey: bytes) -> Member | None:
    """The membership record of ``pubkey`` (revoked ones included), or None."""
    record = reader.get(member_key(pubkey))
    if record is None:
        return None
    return member_from_record(pubkey, record)


def seed_records(orgs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """State entries for a genesis file's organisations (validated by the genesis loader).

    Each org mapping has ``id``, ``name``, ``roles``, ``business_ids`` and ``keys``: a list
    of ``{"pubkey": hex, "roles": [...], "kind": ..., "label": ...}``.
    """
    entries: dict[str, Any] = {}
    for org in orgs:
        entries[org_key(org["id"])] = {
            "id": org["id"],
            "name": org.get("name", org["id"]),
            "roles": sorted(org["roles"]),
            "business_ids": sorted(org.get("business_ids", [])),
        }
        for key in org.get("keys", []):
            entries[f"key/{key['pubkey']}"] = {
                "org": org["id"],
                "roles": sorted(key.get("roles", org["roles"])),
                "kind": key.get("kind", "member"),
                "revoked": False,
                "label": key.get("label", ""),
            }
    return entries


class MembershipContract(Contract):
    """Who belongs to which organisation, with which roles."""

    name = NAME
    # 2: an admin cannot revoke its organisation's last active admin key (E_LAST_ADMIN).
    # Under 1 it could, and the organisation could then never add or revoke a key again:
    # only an admin of an organisation manages its keys. Genesis names the version; this
    # build runs chains of either.
    version = "2"
    runs_versions: tuple[str, ...] = ("1", "2")

    @classmethod
    def for_version(cls, version: str) -> MembershipContract | None:
        return cls(rules_version=version) if version in cls.runs_versions else None

    def __init__(self, *, rules_version: str = version) -> None:
        if rules_version not in self.runs_versions:
            raise ValueError(f"membership has no rules version {rules_version!r}")
        self.keeps_an_admin = rules_version != "1"

    def check(self, call: Call) -> None:
        if call.action == "add_member":
            arg_str(call.args, "pubkey", pattern=PUBKEY_HEX)
            kind = arg_str(call.args, "kind", optional=True) or "member"
            if kind not in ("member", "device"):
                raise ContractError(E_ARGS, "kind must be 'member' or 'device'")
            roles = call.args.get("roles", [])
            if not isinstance(roles, list) or len(roles) > 16:
                raise ContractError(E_ARGS, "roles must be a list of at most 16 role names")
            for role in roles:
                if not isinstance(role, str) or not ROLE.fullmatch(role):
                    raise ContractError(E_ARGS, f"invalid role name {role!r}")
            arg_str(call.args, "label", optional=True, max_len=128)
        elif call.action == "revoke_member":
            arg_str(call.args, "pubkey", pattern=PUBKEY_HEX)
        else:
            raise ContractError(E_UNKNOWN_ACTION, f"membership has no action {call.action!r}")

    def apply(self, ctx: Context, call: Call) -> None:
        if call.action == "add_member":
            self.process_add_member(ctx, call.args)
        elif call.action == "revoke_member":
            self.process_revoke_member(ctx, call.args)
        else:
            raise ContractError(E_UNKNOWN_ACTION, f"membership has no action {call.action!r}")

    def process_add_member(self, ctx: Context, args: Mapping[str, Any]) -> None:
        # Verify the signer administers an organisation: keys are added to the signer's own.
        ctx.require_role(ADMIN)
        org = ctx.state.get(org_key(ctx.signer.org))
        if org is None:
            raise ContractError(E_NOT_FOUND, f"organisation {ctx.signer.org!r} not found")
        pubkey_hex = str(args["pubkey"])
        # Verify the key is new: a key belongs to one organisation for ever (revoked or not).
        if ctx.state.get(f"key/{pubkey_hex}") is not None:
            raise ContractError(E_EXISTS, "this key is already registered")
        kind = str(args.get("kind") or "member")
        if kind == DEVICE:
            roles = [DEVICE]
        else:
            roles = list(args.get("roles") or org["roles"])
            # Verify no role beyond what the organisation holds (admin is granted by admins).
            allowed = set(org["roles"]) | {ADMIN}
            extra = sorted(set(roles) - allowed)
            if extra:
                raise ContractError(E_ROLE, f"organisation does not hold roles {extra}")
        record = {
            "org": ctx.signer.org,
            "roles": sorted(set(roles)),
            "kind": kind,
            "revoked": False,
            "label": str(args.get("label") or ""),
        }
        ctx.state.put(f"key/{pubkey_hex}", record)
        ctx.emit(
            "member_added",
            {"org": ctx.signer.org, "pubkey": pubkey_hex, "kind": kind, "roles": record["roles"]},
            keys=(ctx.signer.org, pubkey_hex),
        )

    def process_revoke_member(self, ctx: Context, args: Mapping[str, Any]) -> None:
        ctx.require_role(ADMIN)
        pubkey_hex = str(args["pubkey"])
        record = ctx.state.get(f"key/{pubkey_hex}")
        if record is None:
            raise ContractError(E_NOT_FOUND, "no such key")
        # Verify the key belongs to the admin's own organisation.
        if record["org"] != ctx.signer.org:
            raise ContractError(E_ROLE, "an admin may only revoke keys of its own organisation")
        if record["revoked"]:
            raise ContractError(E_REVOKED, "key already revoked")
        if self.keeps_an_admin and ADMIN in record["roles"] and not any(
                key != f"key/{pubkey_hex}" and other["org"] == record["org"]
                and ADMIN in other["roles"] and not other["revoked"]
                for key, other in ctx.state.scan("key/")):
            # Scans every key: revocations are rare, and an index would be state to keep.
            raise ContractError(E_LAST_ADMIN, "this is the organisation's last active admin "
                                              "key; add another admin key first")
        ctx.state.put(f"key/{pubkey_hex}", {**record, "revoked": True})
        ctx.emit(
            "member_revoked",
            {"org": ctx.signer.org, "pubkey": pubkey_hex},
            keys=(ctx.signer.org, pubkey_hex),
        )

    def query(self, ctx: QueryContext, name: str, args: Mapping[str, Any]) -> Any:
        if name == "org":
            org_id = arg_str(args, "id", pattern=ORG_ID)
            org = ctx.state.get(org_key(org_id))
            if org is None:
                raise ContractError(E_NOT_FOUND, f"organisation {org_id!r} not found")
            return org
        if name == "orgs":
            return [value for _, value in ctx.state.scan("org/")]
        if name == "member":
            pubkey_hex = arg_str(args, "pubkey", pattern=PUBKEY_HEX)
            record = ctx.state.get(f"key/{pubkey_hex}")
            if record is None:
                raise ContractError(E_NOT_FOUND, "no such key")
            return {"pubkey": pubkey_hex, **record}
        if name == "members":
            org_id = arg_str(args, "org", pattern=ORG_ID)
            return [
                {"pubkey": key[len("key/") :], **value}
                for key, value in ctx.state.scan("key/")
                if value["org"] == org_id
            ]
        raise ContractError(E_UNKNOWN_QUERY, f"membership has no query {name!r}")
