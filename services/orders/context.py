"""What the orders flows need at run time, built once in the app lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders.catalog_client import CatalogClient
from services.orders.payments import PaymentGateway
from services.orders.settings import OrdersSettings


@dataclass
class OrdersContext:
    settings: OrdersSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    catalog: CatalogClient
    gateway: PaymentGateway
