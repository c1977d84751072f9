"""A product's lifecycle as data: its statuses and the transitions between them.

``lifecycle.py`` checks who may do what and refuses impossible requests with a 409 the
client can act on; :func:`move` is the last word on which status changes exist at all, so
a new code path cannot put a product in a state the rest of the catalog does not expect.
"""

from __future__ import annotations

from enum import StrEnum

from shared import statuses
from shared.statuses import HasStatus


class ProductStatus(StrEnum):
    DRAFT = "draft"  # never published; its provider edits it
    IN_REVIEW = "in_review"  # never published; an L3 draft waits for a regulator
    LISTED = "listed"  # published, searchable, orderable
    SUSPENDED = "suspended"  # published, hidden and not orderable (regulator)
    RETIRED = "retired"  # for good


class DraftStatus(StrEnum):
    """The working copy of a product (the product itself may be listed meanwhile)."""

    EDITING = "editing"
    IN_REVIEW = "in_review"


S = ProductStatus
#: (from, to) → what the change is called.
TRANSITIONS: dict[tuple[ProductStatus, ProductStatus], str] = {
    (S.DRAFT, S.LISTED): "listed",  # an L1/L2 draft published
    (S.DRAFT, S.IN_REVIEW): "submitted",  # an L3 draft sent to review
    (S.IN_REVIEW, S.LISTED): "listed",  # approved
    (S.IN_REVIEW, S.DRAFT): "rejected",
    (S.LISTED, S.SUSPENDED): "suspended",
    (S.SUSPENDED, S.LISTED): "reinstated",
    **{(frm, S.RETIRED): "retired" for frm in (S.DRAFT, S.IN_REVIEW, S.LISTED, S.SUSPENDED)},
}

#: Never published: there is no version to show.
UNPUBLISHED = frozenset({S.DRAFT, S.IN_REVIEW})


def move(obj: HasStatus, to: ProductStatus) -> str:
    """Set the status (see :func:`shared.statuses.move`); return the transition's name."""
    return statuses.move(obj, to, TRANSITIONS, "a product")
