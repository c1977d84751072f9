"""Reports each L3 product's privacy budget to the catalog, so buyers see what remains.

The dataservice's ledger is the single source of truth. After answers are charged, the
product is marked changed; every ``interval`` seconds the changed products' budgets are
read from the ledger and one report per catalog product bound to them (the token's product
of each charge, and every alias of the mapped product) goes into the outbox (destination
``catalog``). A relay PUTs them to ``{catalog}/v1/products/{id}/privacy-budget``; the
catalog keeps the newest by ``as_of``, so late or repeated reports are harmless. A report
the catalog refuses for good (404: no such product there, 422: not L3) is dropped with a
warning: it is a copy, and the next change reports again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dataservice import budget
from services.dataservice.datasource import DataSource
from services.dataservice.models import privacy_charges
from shared.db import utcnow
from shared.outbox import OutboxMessage, enqueue
from shared.periodic import Periodic
from shared.relays import HttpDelivery, Outgoing, Relay

logger = logging.getLogger("sluice.dataservice.budget_report")

REPORT_KIND = "privacy_budget_report"
REPORT_DESTINATION = "catalog"


class BudgetReporter:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], data: DataSource,
                 interval: float = 5.0) -> None:
        self.sessionmaker = sessionmaker
        self.data = data
        self.interval = interval
        self._changed: dict[str, set[str]] = {}  # mapped product → catalog ids charged since
        self._loop = Periodic("budget-reports", self._step, interval, run_at_start=False)

    def charged(self, mapped_id: str, catalog_id: str) -> None:
        """An answer was charged to ``mapped_id``'s budget (called after commit)."""
        self._changed.setdefault(mapped_id, set()).add(catalog_id)

    async def flush(self) -> int:
        """Queue a report for every changed product; return how many were queued."""
        changed, self._changed = self._changed, {}
        queued = 0
        try:
            async with self.sessionmaker() as session, session.begin():
                for mapped_id, catalog_ids in changed.items():
                    queued += await self._report(session, mapped_id, catalog_ids)
        except Exception:
            for mapped_id, ids in changed.items():  # try again next time
                self._changed.setdefault(mapped_id, set()).update(ids)
            raise
        return queued

    async def _report(self, session: AsyncSession, mapped_id: str, catalog_ids: set[str]) -> int:
        bp = self.data.bound.get(mapped_id)
        if bp is None or bp.mapping.privacy is None:
            return 0
        state = await budget.product_budget(session, mapped_id, bp.mapping.privacy)
        c = privacy_charges.c
        seen = set((await session.execute(select(c.catalog_product_id).distinct().where(
            c.product_id == mapped_id, c.period == state.period))).scalars().all())
        aliases = {alias for alias, target in self.data.aliases.items() if target == mapped_id}
        body: dict[str, Any] = {**state.view(), "answers": 0,
                                "as_of": utcnow().isoformat().replace("+00:00", "Z")}
        body.pop("epsilon_remaining", None)
        targets = sorted(catalog_ids | seen | aliases)
        for catalog_id in targets:
            await enqueue(session, kind=REPORT_KIND, destination=REPORT_DESTINATION,
                          message_id=str(uuid.uuid4()),
                          payload={"product_id": catalog_id, "report": body})
        return len(targets)

    def wake(self) -> None:
        self._loop.wake()

    async def run(self) -> None:
        await self._loop.run()

    async def _step(self) -> None:
        await asyncio.sleep(0)  # let other charges of the same burst arrive
        if self._changed:
            try:
                await self.flush()
            except Exception as exc:
                logger.warning("could not queue privacy budget reports (%s); retrying", exc)


def _newest_per_product(messages: Sequence[OutboxMessage]) -> list[Sequence[OutboxMessage]]:
    """Only the newest report per product in a batch is sent (the catalog keeps the newest
    anyway); the older ones count as delivered with it. In id order."""
    newest: dict[str, OutboxMessage] = {}
    for m in messages:
        newest[str(m.payload["product_id"])] = m
    return [[m] for m in sorted(newest.values(), key=lambda m: m.id)]


def _put_report(run: Sequence[OutboxMessage]) -> Outgoing:
    [m] = run
    return Outgoing("PUT", f"/v1/products/{m.payload['product_id']}/privacy-budget", m.payload["report"])


#: PUT each product's newest report; a report the catalog refuses for good (404: no such
#: product there, 422: not L3) is dropped with a warning (a newer one follows the next charge).
REPORT_DELIVERY = HttpDelivery("catalog", "catalog_url", _put_report, runs=_newest_per_product,
                               dropped=frozenset({404, 422}))
REPORT_RELAY = Relay(REPORT_DESTINATION, REPORT_DELIVERY, what="privacy budget reports")
