"""Start Sluice services as real uvicorn processes on free ports.

Used by the end-to-end tests: each service gets its own database (SQLite files
in a temporary folder, or PostgreSQL databases when SLUICE_TEST_POSTGRES_URL is
set), is migrated with its real ``migrate`` command, started with its real
``serve`` command, and always stopped again, even when a test fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from tests.support import PG_DB_PREFIX, POSTGRES_URL, ROOT, recreate_pg_database

OPERATOR_ID = "operator"
OPERATOR_SECRET = "e2e-operator-secret"
STRIPE_WEBHOOK_SECRET = "whsec_e2e_cluster"
STRIPE_WEBHOOK_ID = "sluice-e2e"
#: Orders' reconciler in the cluster: pending orders are checked against Stripe
#: after this long (the "webhook lost" scenario waits for it).
RECONCILE_AFTER_SECONDS = 2.0


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports. The sockets stay bound until all are chosen: asked one at
    a time, the kernel may hand out the same port twice (a cluster run once gave the access
    balancer and a catalog replica the same port, and the replica failed to bind)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class Proc:
    name: str
    url: str
    port: int
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "serve", "--host", "127.0.0.1",
             "--port", str(self.port)],
            cwd=self.env.get("SLUICE_E2E_CWD", str(ROOT)), env=self.env, stdout=out, stderr=out,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no chance to finish anything."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_healthy()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class LocalStripe:
    """localstripe on a free port, from scratch (it keeps everything in memory)."""

    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            [str(Path(sys.executable).with_name("localstripe")), "--port", str(self.port),
             "--from-scratch"],
            cwd=self.log.parent, stdout=out, stderr=out, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"localstripe did not start:\n{self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def register_webhook(self, url: str, secret: str = STRIPE_WEBHOOK_SECRET) -> None:
        """Point localstripe's (only) webhook at ``url``; re-registering replaces it."""
        resp = httpx.post(f"{self.url}/_config/webhooks/{STRIPE_WEBHOOK_ID}",
                          data={"url": url, "secret": secret}, timeout=5)
        resp.raise_for_status()

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


@dataclass
class Cluster:
    workdir: Path
    backend: str = "sqlite"
    services: tuple[str, ...] = ("access", "audit", "catalog", "orders", "dataservice")
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    stripe: LocalStripe | None = None

    def __post_init__(self) -> None:
        *service_ports, stripe_port = free_ports(6)  # distinct, asked for together
        self.ports = dict(zip(("access", "audit", "catalog", "orders", "dataservice"), service_ports, strict=True))
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.service_secrets = {name: f"e2e-{name}-secret" for name in self.services if name != "access"}
        # The dataservice generates its demo data under var/ of its working directory,
        # and reads the provider's product bindings from this file.
        self.aliases_file = self.workdir / "dataservice-aliases.yaml"
        if "orders" in self.services:
            self.stripe = LocalStripe(stripe_port, self.workdir / "localstripe.log")

    def database_url(self, service: str) -> str:
        if self.backend == "postgresql":
            return recreate_pg_database(f"{PG_DB_PREFIX}_e2e_{service}")
        return f"sqlite+aiosqlite:///{self.workdir / f'{service}.db'}"

    def service_settings(self, service: str) -> dict[str, str]:
        """The ``SLUICE_<SERVICE>_*`` settings of an e2e cluster, whatever its shape: secrets,
        quick polling and short waits (no URLs, databases or ports)."""
        prefix = f"SLUICE_{service.upper()}_"
        env = {
            prefix + "JWKS_MIN_REFETCH_SECONDS": "1",
            prefix + "OUTBOX_POLL_SECONDS": "0.2",
            prefix + "LOG_JSON": "true",
        }
        if service == "access":
            env[prefix + "BOOTSTRAP_CLIENT_ID"] = OPERATOR_ID
            env[prefix + "BOOTSTRAP_CLIENT_SECRET"] = OPERATOR_SECRET
            env[prefix + "BOOTSTRAP_SERVICE_CLIENTS"] = json.dumps(
                {f"svc-{name}": secret for name, secret in self.service_secrets.items()})
        else:
            env[prefix + "SERVICE_CLIENT_SECRET"] = self.service_secrets[service]
        if service == "audit":
            env[prefix + "CHECKPOINT_INTERVAL_SECONDS"] = "0.5"
        if service == "orders":
            env[prefix + "STRIPE_WEBHOOK_SECRET"] = STRIPE_WEBHOOK_SECRET
            env[prefix + "RECONCILE_AFTER_SECONDS"] = str(RECONCILE_AFTER_SECONDS)
            env[prefix + "RECONCILE_INTERVAL_SECONDS"] = "0.5"
            env[prefix + "FULFILMENT_POLL_SECONDS"] = "0.2"
        if service == "dataservice":
            env[prefix + "PRODUCT_ALIASES_FILE"] = str(self.aliases_file)
            env[prefix + "REVOCATION_POLL_SECONDS"] = "1"
        env.update({k: v for k, v in self.extra_env.items() if k.startswith(prefix)})
        return env

    def env_for(self, service: str, database_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["PYTHONPATH"] = str(ROOT)
        env["SLUICE_E2E_CWD"] = str(self.workdir)
        prefix = f"SLUICE_{service.upper()}_"
        env[prefix + "DATABASE_URL"] = database_url
        for other, url in self.urls.items():
            if other != "dataservice":
                env[f"{prefix}{other.upper()}_URL"] = url
        env[prefix + "PUBLIC_URL"] = self.urls[service]
        if service == "orders":
            assert self.stripe is not None
            env[prefix + "STRIPE_API_BASE"] = self.stripe.url
        env.update(self.service_settings(service))
        return env

    def start(self) -> None:
        (self.workdir / "var").mkdir(parents=True, exist_ok=True)
        if self.stripe is not None:
            self.stripe.start()
        for name in self.services:
            env = self.env_for(name, self.database_url(name))
            subprocess.run(
                [sys.executable, "-m", f"services.{name}", "migrate"], cwd=ROOT, env=env,
                check=True, capture_output=True,
            )
            proc = Proc(name, self.urls[name], self.ports[name], self.workdir / f"{name}.log", env)
            self.procs[name] = proc
            proc.start()
        for proc in self.procs.values():
            proc.wait_healthy()
        if self.stripe is not None:
            self.stripe.register_webhook(self.webhook_url)

    @property
    def webhook_url(self) -> str:
        return f"{self.urls['orders']}/v1/webhooks/stripe"

    def stop(self) -> None:
        try:
            for proc in self.procs.values():
                proc.stop()
        finally:
            if self.stripe is not None:
                self.stripe.stop()

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.procs.values())

    def operator_token(self) -> str:
        resp = httpx.post(f"{self.urls['access']}/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(OPERATOR_ID, OPERATOR_SECRET), timeout=10)
        resp.raise_for_status()
        return str(resp.json()["access_token"])


def postgres_available() -> bool:
    return bool(POSTGRES_URL)


# --- cluster mode: `make cluster` on free ports ---------------------------------------------

def local_cluster_module() -> ModuleType:
    """deploy/local/cluster.py, the code behind `make cluster` (loaded from its file: deploy/ is
    not a package)."""
    name = "sluice_make_cluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "local" / "cluster.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def cluster_mode_unavailable(postgres_url: str = POSTGRES_URL) -> str | None:
    """Why the cluster mode cannot run here (None: it can)."""
    if not postgres_url:
        return "the cluster mode runs on PostgreSQL: set SLUICE_TEST_POSTGRES_URL"
    if local_cluster_module().haproxy_path() is None:
        return ("HAProxy is not installed (apt-get install haproxy; .ci/run installs it, "
                "make cluster too)")
    return None


@dataclass
class ReplicatedCluster(Cluster):
    """Cluster mode: every service ``replica_count`` times behind HAProxy, on PostgreSQL, run by
    `make cluster`'s own ``LocalCluster`` on free ports, with the e2e settings of :class:`Cluster`.
    ``urls`` are the balancer's; ``replicas[service]`` are the processes behind it."""

    replica_count: int = 2
    db_prefix: str = ""  # the databases are <db_prefix>_<service> (default: the tests' prefix)
    admin_url: str = POSTGRES_URL  # a server URL whose role may create databases
    local: Any = None

    def __post_init__(self) -> None:
        self.backend = "postgresql"
        mod = local_cluster_module()
        self.service_secrets = {name: f"e2e-{name}-secret" for name in self.services if name != "access"}
        self.aliases_file = self.workdir / "dataservice-aliases.yaml"
        self.db_prefix = self.db_prefix or f"{PG_DB_PREFIX}_e2e_cluster"
        ports = iter(free_ports(len(mod.SERVICES) * (1 + self.replica_count) + 2))
        config = mod.ClusterConfig(
            workdir=self.workdir, cwd=self.workdir, replicas=self.replica_count,
            lb_ports={s: next(ports) for s in mod.SERVICES},
            replica_ports={s: [next(ports) for _ in range(self.replica_count)] for s in mod.SERVICES},
            stripe_port=next(ports), stats_port=next(ports), admin_url=self.admin_url,
            db_prefix=self.db_prefix, fresh_databases=True,
            base_env={k: v for s in mod.SERVICES for k, v in self.service_settings(s).items()})
        self.local = mod.LocalCluster(config, mod.ensure_haproxy(install=False), say=lambda _msg: None)
        self.ports = dict(config.lb_ports)
        self.urls = dict(self.local.urls)

    @property
    def replicas(self) -> dict[str, list[Any]]:
        return dict(self.local.replicas)

    @property
    def stripe_url(self) -> str:
        return str(self.local.stripe_url)

    def database_url(self, service: str) -> str:
        return str(self.local.config.database_url(service))

    def start(self) -> None:
        (self.workdir / "var").mkdir(parents=True, exist_ok=True)
        self.local.start()

    def restart(self, replica: Any) -> None:
        """Start a killed replica and wait until the balancer routes to it again."""
        self.local.restart(replica)

    def stop(self) -> None:
        self.local.stop()

    def logs(self) -> str:
        return str(self.local.logs_tail())
