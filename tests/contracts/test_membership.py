"""membership: only an organisation's admin adds or revokes that organisation's keys."""

from __future__ import annotations

from contract_harness import make_ledger


def setup_ledger():
    ledger = make_ledger()
    ledger.add_org("customs", ["customs"])
    ledger.add_org("seller", ["seller"])
    return ledger


def test_admin_adds_member_with_org_roles():
    ledger = setup_ledger()
    clerk = ledger.new_key("clerk").verify_key.encode().hex()
    receipt = ledger.apply("customs", "membership", "add_member", {"pubkey": clerk})
    assert receipt.ok, receipt
    member = ledger.query("membership", "member", {"pubkey": clerk})
    assert member["org"] == "customs" and member["roles"] == ["customs"]
    assert receipt.events[0].type == "member_added"


def test_new_member_can_sign_but_not_administer():
    ledger = setup_ledger()
    clerk = ledger.new_key("clerk").verify_key.encode().hex()
    assert ledger.apply("customs", "membership", "add_member", {"pubkey": clerk}).ok
    other = ledger.new_key("other").verify_key.encode().hex()
    receipt = ledger.apply("clerk", "membership", "add_member", {"pubkey": other})
    assert receipt.code == "E_ROLE"


def test_invalid_role_beyond_organisation_is_refused():
    ledger = setup_ledger()
    clerk = ledger.new_key("clerk").verify_key.encode().hex()
    receipt = ledger.apply("seller", "membership", "add_member",
                           {"pubkey": clerk, "roles": ["customs"]})
    assert receipt.code == "E_ROLE"


def test_invalid_revoke_of_other_organisations_key_is_refused():
    ledger = setup_ledger()
    receipt = ledger.apply("seller", "membership", "revoke_member",
                           {"pubkey": ledger.pub("customs").hex()})
    assert receipt.code == "E_ROLE"


def test_revoked_key_can_no_longer_sign():
    ledger = setup_ledger()
    clerk = ledger.new_key("clerk").verify_key.encode().hex()
    assert ledger.apply("customs", "membership", "add_member", {"pubkey": clerk}).ok
    assert ledger.apply("customs", "membership", "revoke_member", {"pubkey": clerk}).ok
    receipt = ledger.apply("clerk", "membership", "add_member",
                           {"pubkey": ledger.new_key("x").verify_key.encode().hex()})
    assert receipt.code == "E_REVOKED_SIGNER"


def test_invalid_unknown_signer_is_refused():
    ledger = setup_ledger()
    ledger.new_key("stranger")
    receipt = ledger.apply("stranger", "membership", "revoke_member",
                           {"pubkey": ledger.pub("customs").hex()})
    assert receipt.code == "E_UNKNOWN_SIGNER"


def test_invalid_pubkey_format_is_refused_and_state_unchanged():
    ledger = setup_ledger()
    before = dict(ledger.base.data)
    receipt = ledger.apply("customs", "membership", "add_member", {"pubkey": "xyz"})
    assert receipt.code == "E_ARGS"
    assert ledger.base.data == before


def test_device_gets_only_device_role():
    ledger = setup_ledger()
    dev = ledger.new_key("dev").verify_key.encode().hex()
    assert ledger.apply("seller", "membership", "add_member",
                        {"pubkey": dev, "kind": "device", "roles": ["seller"]}).ok
    assert ledger.query("membership", "member", {"pubkey": dev})["roles"] == ["device"]


# --- rules version 2: an organisation keeps an admin key -------------------------------------


def ledger_of(version: str):
    from contracts.membership import MembershipContract

    ledger = setup_ledger()
    ledger.contracts["membership"] = MembershipContract(rules_version=version)
    return ledger


def test_invalid_revoke_of_the_last_admin_key_is_refused():
    """Regression (black-box review): an admin could revoke its own, last admin key, and
    the organisation could never manage its keys again."""
    ledger = ledger_of("2")
    own = ledger.pub("customs").hex()
    receipt = ledger.apply("customs", "membership", "revoke_member", {"pubkey": own})
    assert receipt.code == "E_LAST_ADMIN", receipt
    assert ledger.query("membership", "member", {"pubkey": own})["revoked"] is False


def test_an_admin_key_can_be_revoked_once_another_admin_key_exists():
    ledger = ledger_of("2")
    deputy = ledger.new_key("deputy").verify_key.encode().hex()
    assert ledger.apply("customs", "membership", "add_member",
                        {"pubkey": deputy, "roles": ["admin", "customs"]}).ok
    own = ledger.pub("customs").hex()
    assert ledger.apply("customs", "membership", "revoke_member", {"pubkey": own}).ok
    # The deputy is now the last one.
    receipt = ledger.apply("deputy", "membership", "revoke_member", {"pubkey": deputy})
    assert receipt.code == "E_LAST_ADMIN"


def test_another_organisations_admins_do_not_count():
    ledger = ledger_of("2")
    receipt = ledger.apply("seller", "membership", "revoke_member",
                           {"pubkey": ledger.pub("seller").hex()})
    assert receipt.code == "E_LAST_ADMIN"


def test_version_1_chains_keep_version_1s_rule():
    ledger = ledger_of("1")
    own = ledger.pub("customs").hex()
    assert ledger.apply("customs", "membership", "revoke_member", {"pubkey": own}).ok
