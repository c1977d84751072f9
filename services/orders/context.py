"""What the orders flows need at run time, built once in the app lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders.catalog_client import CatalogClient
from services.orders.payments import PaymentGateway
from services.orders.settings import OrdersSettings
from shared.outbox import OutboxRelay


@dataclass
class OrdersContext:
    settings: OrdersSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    catalog: CatalogClient
    gateway: PaymentGateway
    fulfilment: OutboxRelay | None = None
    refunds: OutboxRelay | None = None

    def wake_fulfilment(self) -> None:
        """Deliver entitlement commands now (call after the transaction that wrote them)."""
        if self.fulfilment is not None:
            self.fulfilment.wake()
        if self.refunds is not None:
            self.refunds.wake()
