"""Test support: databases per backend, app runners and token factories.

Database tests run on SQLite always and on PostgreSQL when
``SLUICE_TEST_POSTGRES_URL`` is set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test).
Schemas are built by each service's Alembic migrations, once per session:
SQLite tests copy a migrated template file; PostgreSQL tests share one migrated
database per service, emptied after each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jose import jwk, jwt
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from shared.auth import StaticKeySource
from shared.db import Database
from shared.migrations import upgrade
from shared.runtime import Runtime, jwks_key_source, runtime_of
from shared.settings import PLATFORM_AUDIENCE

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("access", "catalog", "orders", "audit", "dataservice")
POSTGRES_URL = os.environ.get("SLUICE_TEST_POSTGRES_URL", "")
#: Prefix of the PostgreSQL databases tests create (change it to run two suites at once).
PG_DB_PREFIX = os.environ.get("SLUICE_TEST_DB_PREFIX", "sluice_test")


def migrations_dir(service: str) -> Path:
    return ROOT / "services" / service / "migrations"


def settings_class(service: str) -> Any:
    mod = importlib.import_module(f"services.{service}.settings")
    name = "DataServiceSettings" if service == "dataservice" else f"{service.capitalize()}Settings"
    return getattr(mod, name)


def app_factory(service: str) -> Callable[..., FastAPI]:
    return importlib.import_module(f"services.{service}.app").create_app  # type: ignore[no-any-return]


# --- PostgreSQL administration --------------------------------------------------

def pg_url(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


async def _recreate_pg_database(name: str) -> None:
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


def recreate_pg_database(name: str) -> str:
    with ThreadPoolExecutor(max_workers=1) as pool:  # may be called inside a running loop
        pool.submit(asyncio.run, _recreate_pg_database(name)).result()
    return pg_url(name)


async def empty_pg_database(url: str) -> None:
    """Remove every row (but keep the schema) after a test."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = [
                r[0]
                for r in await conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            ]
            if tables:
                # replica role skips ordinary triggers (e.g. append-only guards)
                # for this cleanup only.
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
                quoted = ", ".join(f'"{t}"' for t in tables)
                await conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


# --- Templates ------------------------------------------------------------------

class DatabaseTemplates:
    """Migrated databases made once per session per (service, backend)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._sqlite: dict[str, Path] = {}
        self._pg: dict[str, str] = {}

    def sqlite_template(self, service: str) -> Path:
        if service not in self._sqlite:
            path = self.workdir / f"template-{service}.db"
            upgrade(migrations_dir(service), f"sqlite+aiosqlite:///{path}")
            self._sqlite[service] = path
        return self._sqlite[service]

    def pg_database(self, service: str) -> str:
        if service not in self._pg:
            url = recreate_pg_database(f"{PG_DB_PREFIX}_{service}")
            upgrade(migrations_dir(service), url)
            self._pg[service] = url
        return self._pg[service]

    def fresh_sqlite(self, service: str, dest_dir: Path) -> str:
        dest = dest_dir / f"{service}-{secrets.token_hex(4)}.db"
        shutil.copyfile(self.sqlite_template(service), dest)
        return f"sqlite+aiosqlite:///{dest}"


# --- Tokens ---------------------------------------------------------------------

@dataclass
class TestKeys:
    """An RSA key pair standing in for the access service's signing key."""

    __test__ = False  # not a pytest test class

    kid: str
    private_pem: bytes
    public_jwk: dict[str, Any]

    @classmethod
    def generate(cls) -> TestKeys:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kid = "test-" + secrets.token_hex(4)
        pub = jwk.construct(public_pem, "RS256").to_dict()
        return cls(kid, pem, {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                              "n": pub["n"], "e": pub["e"]})

    def key_source(self) -> StaticKeySource:
        return StaticKeySource({self.kid: jwk.construct(self.public_jwk, "RS256")})

    def token(
        self,
        *,
        roles: list[str] | None = None,
        org: str | None = "org_test",
        sub: str = "cli_test",
        iss: str = "http://127.0.0.1:8003",
        aud: str | list[str] = PLATFORM_AUDIENCE,
        ttl: int = 900,
        typ: str = "JWT",
        kid: str | None = None,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": iss, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + ttl,
            "jti": secrets.token_urlsafe(8), "client_id": sub, "org": org,
            "roles": roles or [], "scope": " ".join(roles or []),
        }
        claims.update(extra)
        token: str = jwt.encode(claims, self.private_pem.decode(), algorithm="RS256",
                                headers={"kid": kid or self.kid, "typ": typ})
        return token


# --- Running apps in-process -------------------------------------------------------

@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    database_url: str

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

    @property
    def settings(self) -> Any:
        return self.runtime.settings

    @property
    def db(self) -> Database:
        return self.runtime.db

    def state(self, cls: type[T]) -> T:
        """The service's typed state of class ``cls`` (e.g. ``CatalogState``)."""
        return self.runtime.state(cls)


def trust_test_keys(app: FastAPI, keys: TestKeys) -> None:
    """Make the app (before its lifespan runs) verify tokens signed by ``keys`` instead of
    fetching the access service's JWKS."""
    app.dependency_overrides[jwks_key_source] = lambda runtime: keys.key_source()


@contextlib.asynccontextmanager
async def run_app(
    service: str,
    database_url: str,
    *,
    keys: TestKeys | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningApp]:
    """Start a service app (with its lifespan) and an httpx client over ASGI.

    With ``keys``, the app verifies tokens signed by the test key instead of
    fetching the access service's JWKS (the access service always uses its own).
    """
    settings = settings_class(service)(database_url=database_url, **overrides)
    app = app_factory(service)(settings)
    if keys is not None and service != "access":
        trust_test_keys(app, keys)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield RunningApp(app, client, database_url)
