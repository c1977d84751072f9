"""The product lifecycle's transition table: every change the catalog makes is in it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.catalog.statuses import TRANSITIONS, ProductStatus, move


def test_retired_is_final_and_suspension_needs_a_listing() -> None:
    assert not [to for frm, to in TRANSITIONS if frm == ProductStatus.RETIRED]
    assert {frm for frm, to in TRANSITIONS if to == ProductStatus.SUSPENDED} == {ProductStatus.LISTED}


def test_move_refuses_a_change_the_table_does_not_hold() -> None:
    product = SimpleNamespace(status="retired")
    with pytest.raises(ValueError, match="cannot go from retired to listed"):
        move(product, ProductStatus.LISTED)
    product = SimpleNamespace(status="listed")
    assert move(product, ProductStatus.SUSPENDED) == "suspended" and product.status == "suspended"
