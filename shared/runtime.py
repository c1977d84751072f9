"""The typed runtime of a service app: what its lifespan builds, and how code reaches it.

``create_service_app``'s lifespan builds one :class:`Runtime` (settings, metrics, database,
HTTP client, token verifier, this service's own token source) and each service's lifespan
step adds its own typed state (a dataclass: the orders context, the catalog's caches, the
audit writer, ...) with :meth:`Runtime.set_state`. Requests reach them through the
``Annotated[..., Depends(...)]`` aliases below (and a per-service alias for the service's
state); lifespan steps and background loops, which have no request, call :func:`runtime_of`.

Why this shape:

* One typed slot (``app.state.runtime``) instead of ~20 untyped ``app.state`` attributes with
  ``getattr`` fallbacks: mypy checks every use, and "what exists when" is written down once.
  Lifespan state (``yield {...}``) would be the Starlette-native slot, but it only reaches
  requests when a server drives the ASGI lifespan; the tests (and the benchmarks) enter
  ``app.router.lifespan_context`` themselves, so the runtime stays on the app.
* The accessors are ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool,
  a hop per request that issue 13 measured.
* Tests replace request-time collaborators with ``app.dependency_overrides[dependency]``.
  What is built *at start* (the key source a verifier trusts, the client the orders service
  calls other services with) is built through :func:`provide`, which honours the same
  ``app.dependency_overrides`` dict: a test overrides the builder before the lifespan runs,
  and no factory needs test-only parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar, cast

import httpx
from fastapi import Depends, FastAPI, Request

from shared.auth import JWKSKeySource, KeySource, TokenVerifier
from shared.db import Database
from shared.middleware import Metrics
from shared.relays import RelayRegistry
from shared.service_auth import TokenSource
from shared.settings import ServiceSettings

T = TypeVar("T")
P = ParamSpec("P")


class Runtime:
    """What every service has while it runs (built in ``create_service_app``'s lifespan).

    ``verifier`` exists once the lifespan steps have run (a step may set its own, as the
    access service does with its key store); ``service_token`` is this service's token for
    calls to other services, ``None`` when no client secret is configured (the access
    service replaces it with a locally signed one).
    """

    def __init__(self, settings: ServiceSettings, metrics: Metrics, db: Database,
                 http: httpx.AsyncClient, service_token: TokenSource | None = None,
                 relays: RelayRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.db = db
        self.http = http
        self.service_token = service_token
        #: The service's outbox relays (shared.relays), started after the lifespan steps.
        self.relays = relays if relays is not None else RelayRegistry(settings, db, ())
        self._verifier: TokenVerifier | None = None
        self._states: dict[type[Any], Any] = {}

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise RuntimeError("the token verifier is built after the lifespan steps; "
                               "a step that needs it must build its own (see services/access/app.py)")
        return self._verifier

    @verifier.setter
    def verifier(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    @property
    def has_verifier(self) -> bool:
        return self._verifier is not None

    def set_state(self, state: object) -> None:
        """Register the service's own typed state (one object per class)."""
        self._states[type(state)] = state

    def state(self, cls: type[T]) -> T:
        """The service state of class ``cls`` a lifespan step registered."""
        try:
            return cast(T, self._states[cls])
        except KeyError:
            raise RuntimeError(f"no {cls.__name__} in this app's runtime: is the lifespan step "
                               "that builds it in create_app's lifespan_steps?") from None


def runtime_of(app: FastAPI) -> Runtime:
    """The running app's runtime (for lifespan steps and background work; requests use the
    dependencies below)."""
    runtime = getattr(app.state, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the app is not running: its lifespan builds the runtime")
    return runtime


def provide(app: FastAPI, builder: Callable[Concatenate[Runtime, P], T], *args: P.args,
            **kwargs: P.kwargs) -> T:
    """``builder(runtime_of(app), ...)``, or the replacement a test put in
    ``app.dependency_overrides[builder]`` (the same dict that replaces request dependencies):
    the injection point for what a lifespan builds once, instead of test-only factory
    arguments."""
    chosen = cast(Callable[..., T], app.dependency_overrides.get(builder, builder))
    return chosen(runtime_of(app), *args, **kwargs)


def jwks_key_source(runtime: Runtime) -> KeySource:
    """The keys platform tokens are checked against: the access service's JWKS (a builder for
    :func:`provide`; tests override it with their own signing key)."""
    s = runtime.settings
    return JWKSKeySource(s.jwks_url, runtime.http, cache_seconds=s.jwks_cache_seconds,
                         min_refetch_seconds=s.jwks_min_refetch_seconds)


# --- request dependencies ---------------------------------------------------------------

async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request.app)


async def get_settings(request: Request) -> ServiceSettings:
    return runtime_of(request.app).settings


async def get_database(request: Request) -> Database:
    return runtime_of(request.app).db


async def get_verifier(request: Request) -> TokenVerifier:
    return runtime_of(request.app).verifier


async def get_metrics(request: Request) -> Metrics:
    return runtime_of(request.app).metrics


async def get_relays(request: Request) -> RelayRegistry:
    return runtime_of(request.app).relays


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
VerifierDep = Annotated[TokenVerifier, Depends(get_verifier)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RelaysDep = Annotated[RelayRegistry, Depends(get_relays)]
