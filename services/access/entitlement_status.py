"""An entitlement's own status and the changes between them, as data (like orders' table).

``entitlements.py`` refuses impossible requests with a 409 the caller can act on; :func:`move`
is the last word on which changes exist, so no code path can bring a revoked entitlement back.
What callers see (:func:`services.access.entitlements.effective_status`) also folds in expiry
and the organisations' and product's suspensions: :class:`Shown`.
"""

from __future__ import annotations

from enum import StrEnum

from shared import statuses
from shared.statuses import HasStatus


class EntitlementStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # by a regulator or operator; reinstatable
    REVOKED = "revoked"  # for good (refund, regulator)


class Shown(StrEnum):
    """The effective status shown to callers: revoked > expired > suspended > active."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    REVOKED = "revoked"


E = EntitlementStatus
#: (from, to) → what the change is called (the audit action's last word, the feed's event).
TRANSITIONS: dict[tuple[EntitlementStatus, EntitlementStatus], str] = {
    (E.ACTIVE, E.SUSPENDED): "suspended",
    (E.SUSPENDED, E.ACTIVE): "reinstated",
    (E.ACTIVE, E.REVOKED): "revoked",
    (E.SUSPENDED, E.REVOKED): "revoked",
}


def move(obj: HasStatus, to: EntitlementStatus) -> str:
    """Set the status (see :func:`shared.statuses.move`); return the transition's name."""
    return statuses.move(obj, to, TRANSITIONS, "an entitlement")
