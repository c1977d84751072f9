"""The pieces every service app is built from (``create_service_app``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from shared import openapi_auth
from shared.auth import (
    PLATFORM_TOKEN_TYP,
    CurrentPrincipal,
    Principal,
    TokenVerifier,
    require_roles,
)
from shared.db import Database
from shared.errors import ServiceUnavailable
from shared.http import create_http_client
from shared.input_guard import ControlCharacterGuard
from shared.logging import configure_logging
from shared.middleware import Metrics, MetricsMiddleware, RequestIdMiddleware
from shared.outbox_routes import dead_letter_counts, outbox_router
from shared.problems import install_problem_handlers, problem_docs
from shared.relays import Relay, RelayRegistry
from shared.runtime import DatabaseDep, MetricsDep, RelaysDep, Runtime, jwks_key_source, provide, runtime_of
from shared.service_auth import ServiceTokenProvider, TokenSource
from shared.settings import ServiceSettings
from shared.strict_query import strict_query_parameters
from shared.tracing import instrument_client, serving, setup_tracing

logger = logging.getLogger("sluice.app")

#: An extra lifespan step: receives the app (``runtime_of(app)`` is built), may register the
#: service's state (``runtime_of(app).set_state(...)``), yields while serving.
LifespanStep = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def default_verifier(app: FastAPI) -> TokenVerifier:
    """Platform tokens, checked against the access service's JWKS (:func:`jwks_key_source`)."""
    settings = runtime_of(app).settings
    return TokenVerifier(provide(app, jwks_key_source), issuer=settings.token_issuer,
                         audience=settings.token_audience, required_typ=PLATFORM_TOKEN_TYP)


def default_service_token(runtime: Runtime) -> TokenSource | None:
    """This service's token for calls to other services (client credentials at the access
    service), or None when no client secret is configured. One provider per app, so every
    relay and client shares the cached token."""
    settings = runtime.settings
    if settings.service_client_secret is None:
        return None
    return ServiceTokenProvider(
        runtime.http,
        f"{settings.access_url}/oauth/token",
        settings.service_client_id,
        settings.service_client_secret.get_secret_value(),
    )


def health_router(service: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get(
        "/readyz",
        summary="Readiness: the service can reach its database",
        responses=problem_docs(503),
    )
    async def readyz(db: DatabaseDep) -> dict[str, str]:
        try:
            await db.ping()
        except Exception as exc:
            raise ServiceUnavailable(
                f"The {service} database is not reachable ({type(exc).__name__}); "
                "check the database URL setting and that the database is running.",
                problem="not-ready",
                title="Not ready",
            ) from exc
        return {"status": "ready", "service": service}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(m: MetricsDep, db: DatabaseDep, relays: RelaysDep) -> Response:
        try:
            async with db.sessionmaker() as session:
                counts = await dead_letter_counts(session)
            m.dead_letters.clear()
            # Every relayed destination has a series (0 when none is dead), so an alert on it
            # does not depend on a first dead letter; other destinations only when they have some.
            for destination in relays.declared:
                counts.setdefault(destination, 0)
            for destination, count in counts.items():
                m.dead_letters.labels(m.service, destination).set(count)
        except Exception as exc:  # the request metrics are still worth serving
            logger.warning("could not count dead-lettered outbox messages: %s", exc)
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    return router


class Me(BaseModel):
    """The verified identity behind the caller's token."""

    subject: str = Field(examples=["cli_2b9e41c07d5a88f3e6a1"])
    client_id: str
    organisation_id: str | None = Field(examples=["org_4f1c2a9d0b7e6c5a3f21"])
    roles: list[str] = Field(examples=[["buyer"]])
    token_id: str | None
    expires_at: datetime


def me_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["identity"])

    @router.get(
        "/me",
        summary="Who the token belongs to (any valid token)",
        response_model=Me,
        responses=problem_docs(401),
    )
    async def whoami(principal: CurrentPrincipal) -> Response:
        # Dumped here, not returned for FastAPI to validate against Me again and re-encode:
        # the same bytes, one pass (the token check's own cost is what this route measures).
        me = Me(
            subject=principal.subject,
            client_id=principal.client_id,
            organisation_id=principal.org_id,
            roles=sorted(principal.roles),
            token_id=principal.token_id,
            expires_at=datetime.fromtimestamp(int(principal.claims["exp"]), UTC),
        )
        return Response(me.model_dump_json(), media_type="application/json")

    return router


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    lifespan_steps: Sequence[LifespanStep] = (),
    relays: Sequence[Relay] = (),
    make_verifier: Callable[[FastAPI], TokenVerifier] = default_verifier,
    outbox_operator: Callable[..., Awaitable[Principal]] = require_roles("operator"),
    openapi_tags: list[dict[str, Any]] | None = None,
    platform_token_paths: Callable[[str], bool] = lambda path: True,
    inner_middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> FastAPI:
    """The app of one service: its ``routers``, its ``lifespan_steps`` (run in order at start,
    undone in reverse at stop) and its outbox ``relays`` (``shared.relays``: started after the
    steps, stopped before them).

    ``inner_middleware``: pure ASGI middleware run after the request id, metrics and
    control-character middleware, right before routing (innermost last), e.g. a lane that
    answers a hot read without FastAPI's routing and dependency solving."""
    service = settings.service_name
    configure_logging(service, settings.log_level, settings.log_json)
    metrics = Metrics(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            settings.database_url,
            echo=settings.db_echo,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            work_mem=settings.db_work_mem,
        )
        http = create_http_client()
        instrument_client(app, http)
        runtime = Runtime(settings, metrics, db, http, relays=RelayRegistry(settings, db, relays))
        app.state.runtime = runtime
        runtime.service_token = provide(app, default_service_token)
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.enter_context(serving(app))
                for step in lifespan_steps:
                    await stack.enter_async_context(step(app))
                if not runtime.has_verifier:
                    runtime.verifier = make_verifier(app)
                # After the steps (a deliverer may use what they built, the access service's
                # token is one), stopped before them.
                await stack.enter_async_context(runtime.relays.running(app, http, runtime.service_token))
                yield
        finally:
            await http.aclose()
            await db.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        default_response_class=JSONResponse,
        # Every route refuses query parameters it does not take (422, named).
        dependencies=[Depends(strict_query_parameters)],
    )
    install_problem_handlers(app)
    for middleware in reversed(inner_middleware):  # add_middleware wraps: the last added is outermost
        app.add_middleware(middleware)
    app.add_middleware(ControlCharacterGuard)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    setup_tracing(app, settings)
    app.include_router(health_router(service))
    app.include_router(me_router())
    app.include_router(outbox_router(outbox_operator))
    for router in routers:
        app.include_router(router)
    # /docs can get a platform token itself: the client-credentials flow at access's /oauth/token.
    token_base = settings.public_url if service == "access" else settings.access_url
    openapi_auth.install(app, f"{token_base.rstrip('/')}/oauth/token", platform_token_paths)
    return app
