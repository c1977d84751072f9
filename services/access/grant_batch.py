"""Many grants in one request: the orders relay's batch (``POST /v1/entitlements/batch``; no
FastAPI here).

Why: the fulfilment relay sent one ``POST /v1/entitlements`` per paid order, and the request
itself (a token check, routing, a transaction with its BEGIN and COMMIT, one ``SELECT`` for the
order's entitlement, one for the buyer, an ``INSERT`` of the row and one of its audit event) cost
more than the grant's own work (docs/performance.md, orders). A batch pays those once: one
``SELECT`` of the orders' entitlements, one of the buyers, the new rows in one flush and their
audit events in one multi-row ``INSERT``, all in the request's transaction.

Each item is answered exactly as ``entitlements.grant`` answers it alone (a repeat returns the
order's entitlement, other terms are a ``Conflict``, a refusal is its ``ProblemError``), in
order. A refusal writes nothing, so it leaves the other items' writes standing. Should another
request grant one of the orders meanwhile (the unique ``order_id`` refuses the flush), the
batch's new rows are dropped and every item takes the one-at-a-time path, which handles that race.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.access import entitlements
from services.access.audit_events import audit_many
from services.access.catalog_client import CatalogClient
from services.access.models import Entitlement, Organisation
from shared.auth import Principal
from shared.errors import ProblemError

#: The most grants one request may carry: the orders relay claims batches of 100.
MAX_GRANTS = 100

#: One item's outcome: (entitlement, created) or the refusal the single grant would raise.
Outcome = tuple[Entitlement, bool] | ProblemError


async def grant_many(session: AsyncSession, catalog: CatalogClient,
                     requests: Sequence[entitlements.GrantRequest | ProblemError],
                     actor: Principal) -> list[Outcome]:
    """Grant each request in order (an item that is already a ``ProblemError``, e.g. a body
    that did not validate, is answered with it); see the module docstring."""
    wanted = [r for r in requests if isinstance(r, entitlements.GrantRequest)]
    if not wanted:
        return list(requests)  # type: ignore[arg-type]  # all ProblemErrors
    by_order = {e.order_id: e for e in await session.scalars(
        select(Entitlement).where(Entitlement.order_id.in_({r.order_id for r in wanted})))}
    buyers = {o.id: o for o in await session.scalars(
        select(Organisation).where(Organisation.id.in_({r.buyer_org for r in wanted})))}
    out: list[Outcome] = []
    created: list[Entitlement] = []
    for req in requests:
        if isinstance(req, ProblemError):
            out.append(req)
            continue
        try:
            ent = by_order.get(req.order_id)
            if ent is not None:  # granted before, or earlier in this batch
                entitlements.check_same_terms(ent, req)
                out.append((ent, False))
                continue
            entitlements.check_grantee(req, buyers.get(req.buyer_org))
            ent = entitlements.new_entitlement(
                req, await catalog.product_version(req.product_id, req.version))
        except ProblemError as exc:
            out.append(exc)
            continue
        by_order[req.order_id] = ent
        created.append(ent)
        out.append((ent, True))
    if not created:
        return out
    try:
        async with session.begin_nested():  # the add inside: see entitlements.grant
            session.add_all(created)
            await session.flush()
    except IntegrityError:
        for ent in created:
            if ent in session:
                session.expunge(ent)
        return [await _one(session, catalog, req, actor) for req in requests]
    await audit_many(session, "entitlement.granted", subject_type="entitlement", actor=actor,
                     subjects=[(e.id, entitlements.granted_details(e)) for e in created])
    return out


async def _one(session: AsyncSession, catalog: CatalogClient,
               req: entitlements.GrantRequest | ProblemError, actor: Principal) -> Outcome:
    if isinstance(req, ProblemError):
        return req
    try:
        return await entitlements.grant(session, catalog, req, actor)
    except ProblemError as exc:
        return exc
