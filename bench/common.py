"""What every benchmark script shares: servers as child processes, tokens, databases, sizes.

Each ``bench/bench_*.py`` stays runnable alone (``.venv/bin/python bench/bench_audit.py``);
``make bench`` (``bench/run.py``) runs them all and prints one table from the rows they
report (``bench/report.py``). Sizes are quick by default; ``BENCH_FULL=1`` selects the
large runs (1M products, 10M audit events). Servers started here are stopped on exit,
on SIGTERM and on errors, and ``bench/run.py`` also kills each script's whole process
group afterwards, so a benchmark never leaves processes behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ISSUER = "http://bench-issuer"
PLATFORM_AUDIENCE = "sluice-api"


def full() -> bool:
    """``BENCH_FULL=1``: the large sizes (minutes per script instead of seconds)."""
    return os.environ.get("BENCH_FULL", "") not in ("", "0")


def postgres_server_url() -> str:
    """The PostgreSQL server the benchmarks create their databases on."""
    return os.environ.get(
        "SLUICE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )


def backends() -> list[str]:
    """Back ends to measure (``BENCH_BACKENDS=postgresql,sqlite``; PostgreSQL by default:
    the targets are PostgreSQL's, SQLite is for development)."""
    return [b for b in os.environ.get("BENCH_BACKENDS", "postgresql").split(",") if b]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- databases -------------------------------------------------------------------------

async def recreate_pg(name: str, server_url: str | None = None) -> str:
    """Drop and create database ``name``; return its SQLAlchemy URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    server_url = server_url or postgres_server_url()
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def existing_pg(name: str, server_url: str | None = None) -> str:
    """Database ``name``, created if missing (kept: ``bench_catalog.py --keep-db``)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    server_url = server_url or postgres_server_url()
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                        {"n": name})).first()
            if found is None:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_pg(name: str, server_url: str | None = None) -> None:
    """Drop a benchmark database (the 10M-event logs are gigabytes)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(server_url or postgres_server_url(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def db_prefix(default: str) -> str:
    return os.environ.get("SLUICE_BENCH_DB_PREFIX", default)


# --- tokens ------------------------------------------------------------------------------

class Keys:
    """An RS256 key pair, its JWK, and platform tokens signed with it."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jose import jwk

        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        pub = jwk.construct(public, "RS256").to_dict()
        self.kid = "bench"
        self.jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                    "n": pub["n"], "e": pub["e"]}

    def token(self, roles: list[str], *, org: str = "org_bench", sub: str = "cli_bench",
              issuer: str = ISSUER, lifetime: int = 3600) -> str:
        from jose import jwt

        now = int(time.time())
        claims = {"iss": issuer, "sub": sub, "aud": PLATFORM_AUDIENCE, "iat": now, "nbf": now,
                  "exp": now + lifetime, "jti": uuid.uuid4().hex, "client_id": sub, "org": org,
                  "roles": roles, "scope": " ".join(roles)}
        return str(jwt.encode(claims, self.pem, algorithm="RS256",
                              headers={"kid": self.kid, "typ": "JWT"}))


# --- child processes ---------------------------------------------------------------------

_RUNNING: list[Server] = []


def _stop_all(*_: Any) -> None:
    for server in list(_RUNNING):
        server.stop()


def _on_sigterm(signum: int, _frame: Any) -> None:
    _stop_all()
    sys.exit(128 + signum)


atexit.register(_stop_all)
with contextlib.suppress(ValueError):  # not in the main thread: the caller handles signals
    signal.signal(signal.SIGTERM, _on_sigterm)

LOG_DIR = Path(tempfile.gettempdir()) / f"sluice-bench-{os.getpid()}"


class Server:
    """A server as a child process (same process group, so ``bench/run.py`` can reap it),
    its output in a log file, optionally sampled by py-spy (``BENCH_PROFILE=1``)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str | None], port: int) -> None:
        self.name = name
        self.port = port
        LOG_DIR.mkdir(exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{port}.log"
        self.profile_path: Path | None = None
        if os.environ.get("BENCH_PROFILE") and Path(sys.executable).with_name("py-spy").exists():
            self.profile_path = LOG_DIR / f"{name}-{port}.pyspy.txt"
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
                   "--rate", "250", "--subprocesses", "--nonblocking", "-o", str(self.profile_path),
                   "--", *cmd]
        self._log = open(self.log_path, "wb")
        merged = {**os.environ, **env}  # None removes a variable
        self.proc = subprocess.Popen(cmd, env={k: v for k, v in merged.items() if v is not None}, cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        _RUNNING.append(self)

    @classmethod
    def service(cls, service: str, env: dict[str, str | None], *, workers: int = 1,
                port: int | None = None) -> Server:
        """``python -m services.<service> serve --workers N`` on a free port."""
        port = port or free_port()
        cmd = [sys.executable, "-m", f"services.{service}", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers)]
        return cls(f"{service}-w{workers}", cmd, env, port)

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    async def wait_ready(self, path: str = "/healthz", within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                status, _ = await http_request(self.port, "GET", path)
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready within {within:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.proc.poll() is None:
            # Under py-spy, stop the profiled server; py-spy then writes its samples and exits.
            for pid in (_children(self.proc.pid) if self.profile_path else []) or [self.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        if self.profile_path is not None and self.profile_path.exists():
            from bench.profile import summarise

            print(summarise(self.profile_path, title=f"py-spy profile of {self.name}"), flush=True)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# --- a minimal HTTP/1.1 client for set-up calls (the load itself: bench/load.py) -----------

async def http_request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                       body: bytes | dict[str, Any] | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection; returns (status, body)."""
    from bench.load import format_request, read_response

    if isinstance(body, dict):
        body = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(format_request(method, path, headers or {}, body or b""))
        return await read_response(reader)
    finally:
        writer.close()


def pct(values: list[float], p: float) -> float:
    """The p-quantile (0..1) of ``values`` in milliseconds (values in seconds)."""
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)
