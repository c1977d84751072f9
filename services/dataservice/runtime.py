"""The data service's typed state (provider data, query service, budget reporter, revocation
list and feed, the platform-token verifier of its regulator and operator endpoints): built by
the ``data_service`` lifespan step in ``app.py``, reached by routers through
:data:`DataService`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.dataservice.budget_report import BudgetReporter
from services.dataservice.datasource import DataSource
from services.dataservice.revocations import RevocationList, RevocationPoller
from services.dataservice.service import QueryService
from services.dataservice.settings import DataServiceSettings
from shared.auth import KeySource, TokenVerifier
from shared.db import Database
from shared.runtime import runtime_of


@dataclass
class DataServiceState:
    settings: DataServiceSettings
    db: Database
    data_source: DataSource
    query_service: QueryService
    budget_reporter: BudgetReporter
    #: Revoked tokens and entitlements (the data-token verifier's extra check reads it).
    revocations: RevocationList
    revocation_poller: RevocationPoller
    #: The access service's keys: data-access tokens and platform tokens are checked with them.
    keys: KeySource
    #: Platform tokens (regulators' privacy views, the operator's outbox endpoints).
    platform_verifier: TokenVerifier


async def get_data_service_state(request: Request) -> DataServiceState:
    return runtime_of(request.app).state(DataServiceState)


#: The data service's state, for routers.
DataService = Annotated[DataServiceState, Depends(get_data_service_state)]
