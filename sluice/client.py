"""A small typed client for the Sluice APIs (buyers, providers, regulators, operators).

Synchronous ``httpx`` underneath (:mod:`sluice.transport`); one
:class:`SluiceClient` per API client (client credentials, or a ready token).
Each service's calls live in :mod:`sluice.api`; the method names say what a
call is for, the docstrings which endpoint it is.
"""

from __future__ import annotations

from sluice.api.access import AccessApi
from sluice.api.audit import AuditApi
from sluice.api.billing import BillingApi
from sluice.api.catalog import CatalogApi
from sluice.api.data import DataApi
from sluice.api.identity import IdentityApi
from sluice.api.orders import OrdersApi
from sluice.transport import JSON, ApiError, CredentialsMissing, Endpoints, Tracer

__all__ = ["JSON", "ApiError", "CredentialsMissing", "Endpoints", "SluiceClient", "Tracer"]


class SluiceClient(IdentityApi, CatalogApi, OrdersApi, BillingApi, AccessApi, AuditApi, DataApi):
    """Every call of every service, on one authenticated transport."""

    def __enter__(self) -> SluiceClient:
        return self
