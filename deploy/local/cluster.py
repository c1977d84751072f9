"""`make cluster`: the marketplace scaled out on one machine.

    python deploy/local/cluster.py [--replicas 2] [--workers 1] [--fresh] [--no-install]

Two replicas (separate processes, each ``serve --workers N``) of every service on
PostgreSQL (one database per service on the machine's server, created when missing), behind
HAProxy (installed with apt-get when missing), which health-checks every replica on
``/readyz``; localstripe and the webhook registrar as in `make run`. Ports: the balancer on
81xx (catalog 8101, orders 8102, access 8103, audit 8104, dataservice 8110), replica 1 on 91xx,
replica 2 on 92xx, localstripe 8421, HAProxy's stats page 8404. Logs and the generated
haproxy.cfg go to var/cluster/; ``var/cluster/demo.env`` tells `make demo` where the cluster is
while it runs. Ctrl-C stops every process it started.

The e2e tests' cluster mode (tests/e2e/cluster.py) runs the same :class:`LocalCluster` on free
ports and SIGKILLs and restarts single replicas under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _path in (str(REPO), str(HERE)):  # run as a script, or loaded by the tests
    if _path not in sys.path:
        sys.path.insert(0, _path)

from balancer import (  # noqa: E402
    Backend,
    check_config,
    ensure_haproxy,
    haproxy_path,
    render_config,
    server_states,
)

__all__ = ["ClusterConfig", "LocalCluster", "ensure_haproxy", "haproxy_path", "main"]

#: Start order matters only a little: access first (the others fetch its keys).
SERVICES = ("access", "audit", "catalog", "orders", "dataservice")
LB_PORTS = {"catalog": 8101, "orders": 8102, "access": 8103, "audit": 8104, "dataservice": 8110}
STRIPE_PORT = 8421
STATS_PORT = 8404
DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

Say = Callable[[str], None]


def replica_ports(service: str, replicas: int) -> list[int]:
    """catalog → [9101, 9201, ...]: replica n listens on 9n·· (same last digits as the balancer)."""
    return [9000 + 100 * (n + 1) + LB_PORTS[service] % 100 for n in range(replicas)]


class Process:
    """One child process in its own session, so a signal reaches its whole group
    (uvicorn's worker processes included) and Ctrl-C in the terminal reaches only us."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.argv, self.env, self.cwd, self.log = name, argv, env, cwd, log
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def send(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the group and wait; SIGKILL it when it does not end in ``timeout``."""
        if self.popen is None:
            return
        self.send(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.popen.wait(timeout=5)
        self.send(signal.SIGKILL)  # stragglers of the group (a worker that outlived its master)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, nothing finished."""
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Replica(Process):
    """One replica of a service: ``python -m services.<name> serve`` on its own port."""

    def __init__(self, service: str, index: int, port: int, workers: int, env: dict[str, str],
                 cwd: Path, logs: Path) -> None:
        argv = [sys.executable, "-m", f"services.{service}", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers)]
        super().__init__(f"{service}-{index + 1}", argv, env, cwd, logs / f"{service}-{index + 1}.log")
        self.service, self.index, self.port = service, index, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/readyz`` answers 200 (the process serves and reaches its database)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f}s:\n{self.tail()}")


@dataclass
class ClusterConfig:
    """Where everything listens and what every process is told."""

    workdir: Path  # logs, haproxy.cfg, localstripe's files
    cwd: Path = REPO  # the services' working directory (their var/ is relative to it)
    replicas: int = 2
    workers: int = 1
    lb_ports: dict[str, int] = field(default_factory=lambda: dict(LB_PORTS))
    replica_ports: dict[str, list[int]] = field(default_factory=dict)
    stripe_port: int = STRIPE_PORT
    stats_port: int = STATS_PORT
    admin_url: str = DEFAULT_ADMIN_URL  # a PostgreSQL URL whose role may create databases
    db_prefix: str = "sluice_cluster"
    fresh_databases: bool = False
    #: SLUICE_* settings every process gets (secrets, test speed-ups); the cluster adds its own.
    base_env: dict[str, str] = field(default_factory=dict)
    db_pool_size: int = 3
    db_max_overflow: int = 5

    def __post_init__(self) -> None:
        for service in SERVICES:
            self.replica_ports.setdefault(service, replica_ports(service, self.replicas))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.lb_ports[service]}"

    def database_url(self, service: str) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.admin_url).set(database=f"{self.db_prefix}_{service}")
        return url.render_as_string(hide_password=False)


async def _ensure_databases(admin_url: str, names: Iterable[str], fresh: bool) -> list[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    created = []
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for name in names:
                if fresh:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if not exists:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
                    created.append(name)
    finally:
        await engine.dispose()
    return created


def ensure_databases(admin_url: str, names: Iterable[str], fresh: bool = False) -> list[str]:
    """Create the databases that do not exist (all of them, dropped first, with ``fresh``)."""
    with ThreadPoolExecutor(max_workers=1) as pool:  # callable from inside a running loop too
        return pool.submit(asyncio.run, _ensure_databases(admin_url, list(names), fresh)).result()


class LocalCluster:
    """Every process of the replicated marketplace, started and stopped together."""

    def __init__(self, config: ClusterConfig, haproxy: str, say: Say = print) -> None:
        self.config, self.haproxy_binary, self.say = config, haproxy, say
        self.logs = config.workdir / "logs"
        self.urls = {s: config.url(s) for s in SERVICES}
        self.stripe_url = f"http://127.0.0.1:{config.stripe_port}"
        self.stats_url = f"http://127.0.0.1:{config.stats_port}"
        self.replicas: dict[str, list[Replica]] = {
            s: [Replica(s, i, port, config.workers, self.env_for(s), config.cwd, self.logs)
                for i, port in enumerate(config.replica_ports[s])]
            for s in SERVICES
        }
        self.haproxy_config = config.workdir / "haproxy.cfg"
        self.balancer = Process("haproxy", [haproxy, "-db", "-f", str(self.haproxy_config)],
                                dict(os.environ), config.workdir, self.logs / "haproxy.log")
        self.stripe = Process("localstripe", [str(Path(sys.executable).with_name("localstripe")),
                                              "--port", str(config.stripe_port), "--from-scratch"],
                              dict(os.environ), config.workdir, self.logs / "localstripe.log")
        self.registrar = Process("stripe-webhook", [sys.executable, str(HERE / "localstripe_webhook.py")],
                                 self.env_for("orders"), config.cwd, self.logs / "stripe-webhook.log")

    # --- configuration ----------------------------------------------------------------
    def env_for(self, service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["PYTHONPATH"] = str(REPO)
        env.update(self.config.base_env)
        prefix = f"SLUICE_{service.upper()}_"
        env[prefix + "DATABASE_URL"] = self.config.database_url(service)
        env[prefix + "PUBLIC_URL"] = self.urls[service]
        for other in ("access", "audit", "catalog", "orders"):  # everyone calls everyone via the balancer
            env[f"{prefix}{other.upper()}_URL"] = self.urls[other]
        env[prefix + "DB_POOL_SIZE"] = str(self.config.db_pool_size)
        env[prefix + "DB_MAX_OVERFLOW"] = str(self.config.db_max_overflow)
        if service == "orders":
            env[prefix + "STRIPE_API_BASE"] = self.stripe_url
        return env

    def backends(self) -> list[Backend]:
        return [Backend(s, self.config.lb_ports[s], self.config.replica_ports[s]) for s in SERVICES]

    def all_processes(self) -> Iterator[Process]:
        yield self.stripe
        for replicas in self.replicas.values():
            yield from replicas
        yield self.balancer
        yield self.registrar

    # --- start and stop -----------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        self.haproxy_config.write_text(render_config(self.backends(), self.config.stats_port))
        check_config(self.haproxy_binary, str(self.haproxy_config))
        names = [f"{self.config.db_prefix}_{s}" for s in SERVICES]
        created = ensure_databases(self.config.admin_url, names, self.config.fresh_databases)
        if created:
            self.say(f"==> created PostgreSQL databases {', '.join(created)}")
        self.say("==> migrating every service's database (once, before any replica starts)")
        self.migrate()
        self.stripe.start()
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.start()
        self.balancer.start()
        self.say(f"==> waiting for {sum(len(r) for r in self.replicas.values())} replicas to be ready")
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.wait_ready()
        self.wait_balanced()
        self.registrar.start()
        self.wait_for_webhook()

    def migrate(self) -> None:
        """``python -m services.<name> migrate`` for every service, in parallel (a Job each in k8s)."""
        procs = {s: subprocess.Popen([sys.executable, "-m", f"services.{s}", "migrate"], cwd=self.config.cwd,
                                     env=self.env_for(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for s in SERVICES}
        failed = []
        for s, p in procs.items():
            out, _ = p.communicate(timeout=300)
            if p.returncode != 0:
                failed.append(f"{s}: {out.decode(errors='replace')[-1500:]}")
        if failed:
            raise RuntimeError("migrations failed:\n" + "\n".join(failed))

    def wait_balanced(self, timeout: float = 30.0) -> None:
        """Until HAProxy reports every replica UP."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if not self.balancer.running:
                raise RuntimeError(f"haproxy exited:\n{self.balancer.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                states = dict(server_states(self.stats_url))
                if states and all(v == "UP" for v in states.values()):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"not every replica is UP in HAProxy after {timeout:.0f}s: {states}")

    def wait_for_webhook(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "will send webhooks to" not in self.registrar.tail(5):
            if time.monotonic() > deadline or not self.registrar.running:
                raise RuntimeError(f"the webhook registrar did not register:\n{self.registrar.tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop everything, children first signalled together, then waited for."""
        running = [p for p in self.all_processes() if p.running]
        for p in running:
            p.send(signal.SIGTERM)
        for p in running:
            p.stop(timeout=15)

    def restart(self, replica: Replica) -> None:
        """Start a stopped (or killed) replica and wait until HAProxy routes to it again."""
        replica.stop()
        replica.start()
        replica.wait_ready()
        self.wait_balanced()

    def write_demo_env(self, path: Path, checkpoint_file: Path) -> None:
        """What `make demo` needs to find the cluster (read by deploy/local/demo.sh)."""
        lines = [f"SLUICE_{s.upper()}_URL={self.urls[s]}" for s in SERVICES]
        lines.append(f"SLUICE_DEMO_CHECKPOINT_FILE={checkpoint_file}")
        path.write_text("# Written by `make cluster` while it runs; `make demo` uses it.\n"
                        + "\n".join(lines) + "\n")

    def logs_tail(self) -> str:
        return "\n\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.all_processes())


# --- `make cluster` ---------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip("'")
    return env


def banner(cluster: LocalCluster, env: dict[str, str]) -> str:
    cfg = cluster.config
    rows = ["", f"Sluice cluster: {cfg.replicas} replicas per service × {cfg.workers} worker(s), "
            f"PostgreSQL databases {cfg.db_prefix}_*, behind HAProxy", ""]
    for s in sorted(SERVICES, key=lambda name: cfg.lb_ports[name]):
        direct = "  ".join(r.url for r in cluster.replicas[s])
        docs = f"{cluster.urls[s]}/docs" if s != "dataservice" else ""
        rows.append(f"  {s:<12} {cluster.urls[s]:<24} replicas: {direct}   {docs}")
    rows += [f"  {'localstripe':<12} {cluster.stripe_url}",
             f"  {'haproxy':<12} {cluster.stats_url}/   (replica health, live)", "",
             f"Logs: {cluster.logs}/   Run the story through the balancer: make demo",
             "Get a token:",
             f"  curl -s -u {env.get('SLUICE_ACCESS_BOOTSTRAP_CLIENT_ID', 'operator')}:"
             f"{env.get('SLUICE_ACCESS_BOOTSTRAP_CLIENT_SECRET', '?')} -d grant_type=client_credentials "
             f"{cluster.urls['access']}/oauth/token",
             "A replica that exits is restarted. Ctrl-C stops everything.", ""]
    return "\n".join(rows)


def supervise(cluster: LocalCluster, stop: Callable[[], bool]) -> None:
    """Restart any process that exits (like a Deployment would), at most every 5 s each."""
    last: dict[str, float] = {}
    while not stop():
        for p in cluster.all_processes():
            if not p.running and time.monotonic() - last.get(p.name, 0.0) > 5:
                cluster.say(f"!! {p.name} exited with {p.exit_code}; restarting it (log: {p.log})")
                last[p.name] = time.monotonic()
                p.start()
        time.sleep(1)


def stop_with_parent() -> None:
    """Get SIGTERM when the parent (make) dies, so killing `make cluster` never leaves the
    supervisor, and with it every replica, running (Linux; elsewhere Ctrl-C still works)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("CLUSTER_REPLICAS", 2)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("CLUSTER_WORKERS", 1)),
                        help="uvicorn worker processes per replica")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the databases")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing HAProxy")
    parser.add_argument("--env-file", default="var/dev.env")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    secrets = read_env_file(Path(args.env_file))
    config = ClusterConfig(
        workdir=REPO / "var" / "cluster", replicas=args.replicas, workers=args.workers,
        admin_url=os.environ.get("SLUICE_CLUSTER_POSTGRES_URL", DEFAULT_ADMIN_URL),
        fresh_databases=args.fresh, base_env=secrets)
    cluster = LocalCluster(config, ensure_haproxy(install=not args.no_install), say=print)
    stopping = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    stop_with_parent()
    demo_env = config.workdir / "demo.env"
    try:
        cluster.start()
        cluster.write_demo_env(demo_env, config.workdir / "regulator-checkpoint.txt")
        print(banner(cluster, secrets), flush=True)
        supervise(cluster, lambda: stopping["now"])
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        print(f"\nthe cluster did not start: {exc}\n(logs: {cluster.logs}/)", file=sys.stderr)
        return 1
    finally:
        print("\n==> stopping every process of the cluster", flush=True)
        demo_env.unlink(missing_ok=True)
        with contextlib.suppress(KeyboardInterrupt):
            cluster.stop()
        print("==> stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
