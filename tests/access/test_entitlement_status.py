"""The entitlement transition table: revocation is final, suspension is reversible."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.access.entitlement_status import TRANSITIONS, EntitlementStatus, move


def test_a_revoked_entitlement_never_comes_back() -> None:
    assert not [to for frm, to in TRANSITIONS if frm == EntitlementStatus.REVOKED]
    with pytest.raises(ValueError, match="cannot go from revoked to active"):
        move(SimpleNamespace(status="revoked"), EntitlementStatus.ACTIVE)


def test_suspension_is_reversible() -> None:
    ent = SimpleNamespace(status="active")
    assert move(ent, EntitlementStatus.SUSPENDED) == "suspended"
    assert move(ent, EntitlementStatus.ACTIVE) == "reinstated" and ent.status == "active"
