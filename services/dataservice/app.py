"""Dataservice app factory: the provider-side, query-only data service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from services.dataservice.aliases import AliasWatcher
from services.dataservice.budget import period_of
from services.dataservice.budget_report import REPORT_RELAY, BudgetReporter
from services.dataservice.config import load_products
from services.dataservice.datasource import BoundProduct, DataSource, data_engine
from services.dataservice.demo_data import seed_demo_once
from services.dataservice.dp_answer import ExactCache
from services.dataservice.releases import Releases
from services.dataservice.revocations import RevocationList, RevocationPoller, polling
from services.dataservice.routers import privacy, query
from services.dataservice.runtime import DataServiceState
from services.dataservice.service import QueryService
from services.dataservice.settings import DataServiceSettings
from services.dataservice.usage import USAGE_RELAY
from shared.app import create_service_app
from shared.audit_relay import AUDIT_RELAY
from shared.auth import InvalidToken, KeySource, TokenVerifier
from shared.db import utcnow
from shared.periodic import stop_task
from shared.runtime import jwks_key_source, provide, runtime_of
from shared.settings import PLATFORM_AUDIENCE

logger = logging.getLogger("sluice.dataservice")

#: RFC 9068 tokens for data services live at most 15 minutes (DESIGN §4); a minute of slack.
MAX_TOKEN_LIFETIME_SECONDS = 16 * 60

DESCRIPTION = """
The provider-side, query-only data service: buyers send structured queries with a
short-lived data-access token (RFC 9068, `typ: at+jwt`, `aud` = this service) and
never receive a copy of the data.

* `GET /v1/schema`: what the token's product exposes and what is left of its limits.
* `POST /v1/query`: structured queries (never SQL). L1/L2: rows, capped and masked.
  L3: differentially private aggregates only (OpenDP; the privacy unit is one person),
  each charged to the product's privacy budget (shared by every buyer, per release
  period) and to the entitlement's own share, with its accuracy per column.
* `GET /v1/privacy/budgets`, `GET /v1/privacy/charges`: the regulator's view of the spend.

Usage is reported to the access service and every query is an audit event (both via
the transactional outbox). Errors are RFC 9457 `application/problem+json`.
"""


def _token_checks(revocations: RevocationList | None) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def check(claims: dict[str, Any]) -> None:
        if "query" not in str(claims.get("scope", "")).split():
            raise InvalidToken("This data service accepts only data-access tokens with scope 'query'.")
        iat, exp = claims.get("iat"), claims.get("exp")
        if isinstance(iat, (int, float)) and isinstance(exp, (int, float)) \
                and exp - iat > MAX_TOKEN_LIFETIME_SECONDS:
            raise InvalidToken("Data-access tokens live at most 15 minutes; this one claims longer. "
                               "Get a new token from the access service.")
        if revocations is not None:
            why = revocations.reason(claims.get("jti"), claims.get("ent"))
            if why is not None:
                raise InvalidToken(f"This token no longer grants access: {why}.")

    return check


def data_token_verifier(keys: KeySource, settings: DataServiceSettings,
                        revocations: RevocationList | None) -> TokenVerifier:
    """Data-access tokens for this service, refused once revoked (``revocations``)."""
    return TokenVerifier(
        keys,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        required_typ="at+jwt",
        extra_check=_token_checks(revocations),
        how_to_get_one="Send a data-access token from the access service's "
        "POST /v1/entitlements/{id}/tokens (for an entitlement to this data service's product).",
    )


def _app_verifier(app: FastAPI) -> TokenVerifier:
    """``create_service_app``'s verifier: data-access tokens, with the state's keys and
    revocation list."""
    state = runtime_of(app).state(DataServiceState)
    return data_token_verifier(state.keys, state.settings, state.revocations)


async def open_data_source(settings: DataServiceSettings) -> DataSource:
    """The provider's database with the products mapped onto it (demo data generated on
    first start when both data_url and products_file are the defaults)."""
    products = load_products(settings.products_file, settings.product_renames())
    engine = data_engine(settings.data_url)
    if settings.uses_demo and settings.demo_autoseed and (
            rows := await seed_demo_once(engine, people=settings.demo_people)):
        logger.info("generated the demo data set (%d health-service visits) at %s", rows,
                    settings.data_url)
    source = DataSource(engine, products)
    await source.reflect()
    return source


async def _first_poll(poller: RevocationPoller) -> None:
    """Read the feed before serving, so a restart does not open a window for revoked tokens
    (briefly: the access service may still be starting; the loop keeps trying)."""
    try:
        await asyncio.wait_for(poller.poll_once(), timeout=3.0)
    except Exception as exc:
        logger.warning("revocation feed not read before start (%s: %s); polling in the background",
                       type(exc).__name__, exc)


async def _prepare_releases(service: QueryService, interval: float) -> None:
    """Build each L3 product's release of the current period when it is missing."""
    def current_period(bp: BoundProduct) -> str:
        assert bp.mapping.privacy is not None
        return period_of(utcnow(), bp.mapping.privacy.period)[0]

    while True:
        try:
            await service.releases.prepare(dict(service.data.bound), current_period)
        except Exception as exc:  # a broken provider database must not end the loop
            logger.warning("could not prepare the releases (%s: %s)", type(exc).__name__, exc)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def data_service(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: provider data, query service, revocation feed, budget reports (the usage
    and budget-report relays are registrations: ``create_app``'s ``relays``)."""
    runtime = runtime_of(app)
    settings, db = runtime.settings, runtime.db
    assert isinstance(settings, DataServiceSettings)
    source = await open_data_source(settings)
    token = runtime.service_token
    if token is None:  # the relays' own warning names the setting (shared.relays)
        logger.warning("without a service client secret the revocation feed cannot be read: "
                       "revoked data-access tokens are refused only once they expire")

    reporter = BudgetReporter(db.sessionmaker, source, settings.budget_report_seconds)
    service = QueryService(
        source, db.sessionmaker, Releases(source.engine, db.engine), mask_value=settings.mask_value,
        timeout=settings.query_timeout_seconds, min_epsilon=settings.min_query_epsilon,
        cache=ExactCache(settings.exact_cache_entries),
        on_charge=reporter.charged)
    revocations = RevocationList()
    poller = RevocationPoller(revocations, runtime.http, settings.access_url, token,
                              interval=settings.revocation_poll_seconds)
    keys = provide(app, jwks_key_source)
    runtime.set_state(DataServiceState(
        settings=settings, db=db, data_source=source, query_service=service, budget_reporter=reporter,
        revocations=revocations, revocation_poller=poller, keys=keys,
        platform_verifier=TokenVerifier(keys, issuer=settings.token_issuer, audience=PLATFORM_AUDIENCE,
                                        required_typ="JWT"),
    ))
    watcher_task = None
    if settings.product_aliases_file:
        watcher = AliasWatcher(source, settings.product_aliases_file)
        watcher.reload_if_changed()
        watcher_task = asyncio.create_task(watcher.run(), name="product-aliases")
    try:
        async with contextlib.AsyncExitStack() as stack:
            if watcher_task is not None:
                stack.push_async_callback(stop_task, watcher_task)
            stack.push_async_callback(stop_task, asyncio.create_task(reporter.run(), name="budget-reports"))
            if settings.release_check_seconds:
                stack.push_async_callback(stop_task, asyncio.create_task(
                    _prepare_releases(service, settings.release_check_seconds),
                    name="releases"))
            if token is not None:
                await _first_poll(poller)
                await stack.enter_async_context(polling(poller))
            yield
    finally:
        await source.dispose()


def create_app(settings: DataServiceSettings | None = None) -> FastAPI:
    settings = settings or DataServiceSettings()
    return create_service_app(
        settings,
        title="Sluice dataservice",
        description=DESCRIPTION,
        routers=[query.router, privacy.router],
        lifespan_steps=[data_service],
        relays=[AUDIT_RELAY, USAGE_RELAY, REPORT_RELAY],
        make_verifier=_app_verifier,
        outbox_operator=privacy.platform_operator,
        # Only the regulator's privacy routes and the operator's outbox routes take platform
        # tokens; the rest take data-access tokens.
        platform_token_paths=lambda path: path.startswith(("/v1/privacy", "/v1/outbox")),
        openapi_tags=[{"name": "query", "description": "Structured queries on one data product."},
                      {"name": "privacy", "description": "The privacy spend, for regulators."}],
    )
