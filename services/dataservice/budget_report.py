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

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dataservice import budget
from services.dataservice.datasource import DataSource
from services.dataservice.models import privacy_charges
from shared.db import utcnow
from shared.outbox import OutboxMessage, check_delivered, enqueue
from shared.periodic import Periodic
from shared.service_auth import ServiceTokenAuth, TokenSource
from shared.tracing import delivery

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


def report_deliverer(http: httpx.AsyncClient, catalog_url: str, token: TokenSource):  # type: ignore[no-untyped-def]
    """PUT each report; only the newest per product in a batch matters (the catalog keeps the
    newest anyway), refusals for good are dropped with a warning."""
    base = catalog_url.rstrip("/")
    auth = ServiceTokenAuth(token)

    async def deliver(messages: Sequence[OutboxMessage]) -> None:
        newest: dict[str, OutboxMessage] = {}
        for m in messages:
            newest[str(m.payload["product_id"])] = m
        for product_id, m in newest.items():
            with delivery(m, "catalog") as trace_headers:
                resp = await http.put(f"{base}/v1/products/{product_id}/privacy-budget",
                                      json=m.payload["report"], headers=trace_headers, auth=auth)
            if resp.status_code in (404, 422):  # a newer report will follow: drop this one
                logger.warning("the catalog refused the privacy budget report of %s (%d): %s",
                               product_id, resp.status_code, resp.text[:300])
                continue
            check_delivered(resp, f"the catalog (budget report of {product_id})")

    return deliver
