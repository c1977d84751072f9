"""`make cluster` (deploy/local/cluster.py, deploy/local/balancer.py) without starting it: what
HAProxy is told, where everything listens, and what every replica is configured with. The
replicated cluster itself runs in tests/e2e/test_scale_faults.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from shared.settings import DEFAULT_PORTS
from tests.e2e.cluster import local_cluster_module

SERVICES = ("access", "audit", "catalog", "orders", "dataservice")


@pytest.fixture(scope="module")
def mod() -> ModuleType:
    return local_cluster_module()


def cluster_in(mod: ModuleType, tmp_path: Path, replicas: int = 2):  # type: ignore[no-untyped-def]
    config = mod.ClusterConfig(workdir=tmp_path, replicas=replicas, base_env={"SLUICE_ACCESS_LOG_JSON": "true"})
    return mod.LocalCluster(config, "/usr/sbin/haproxy", say=lambda _msg: None)


def sections(config: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in config.splitlines():
        if line and not line.startswith((" ", "#")):
            current = line
            out[current] = []
        elif line.strip() and current:
            out[current].append(line.strip())
    return out


def test_every_service_has_a_frontend_and_a_backend_of_health_checked_replicas(mod, tmp_path) -> None:
    cluster = cluster_in(mod, tmp_path)
    cfg = sections(mod.render_config(cluster.backends(), 8404))
    for service in SERVICES:
        assert f"bind 127.0.0.1:{mod.LB_PORTS[service]}" in cfg[f"frontend {service}"]
        backend = cfg[f"backend {service}"]
        assert "option httpchk GET /readyz" in backend and "http-check expect status 200" in backend
        servers = [line for line in backend if line.startswith("server ")]
        assert servers == [f"server {service}-{i + 1} 127.0.0.1:{port} check"
                           for i, port in enumerate(mod.replica_ports(service, 2))]


def test_only_requests_that_never_reached_a_replica_are_retried_on_another(mod, tmp_path) -> None:
    defaults = sections(mod.render_config(cluster_in(mod, tmp_path).backends(), 8404))["defaults"]
    assert "retry-on conn-failure" in defaults and "option redispatch 1" in defaults
    assert not [line for line in defaults if re.search(r"retry-on .*(response|timeout|50\d)", line)]


@pytest.mark.skipif(local_cluster_module().haproxy_path() is None, reason="HAProxy is not installed")
def test_haproxy_accepts_the_generated_configuration(mod, tmp_path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(mod.render_config(cluster_in(mod, tmp_path, replicas=3).backends(), 8404))
    done = subprocess.run([mod.haproxy_path(), "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_no_two_listeners_share_a_port_and_none_takes_one_of_make_run(mod, replicas: int) -> None:
    ports = [*mod.LB_PORTS.values(), mod.STRIPE_PORT, mod.STATS_PORT,
             *(p for s in SERVICES for p in mod.replica_ports(s, replicas))]
    assert len(ports) == len(set(ports))
    assert not set(ports) & {*DEFAULT_PORTS.values(), 8420}


def test_replicas_reach_each_other_through_the_balancer_and_each_service_has_its_own_database(
        mod, tmp_path) -> None:
    cluster = cluster_in(mod, tmp_path)
    databases = set()
    for service in SERVICES:
        prefix = f"SLUICE_{service.upper()}_"
        first, *others = [r.env for r in cluster.replicas[service]]
        assert all(env == first for env in others)  # the replicas of a service are alike
        env = first
        assert env[prefix + "PUBLIC_URL"] == cluster.urls[service]
        for other in ("access", "audit", "catalog", "orders"):
            assert env[f"{prefix}{other.upper()}_URL"] == cluster.urls[other]
        assert env[prefix + "DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["SLUICE_ACCESS_LOG_JSON"] == "true"  # the given settings reach every process
        databases.add(env[prefix + "DATABASE_URL"])
    assert len(databases) == len(SERVICES)


def test_make_demo_is_told_the_balancers_addresses(mod, tmp_path) -> None:
    cluster = cluster_in(mod, tmp_path)
    cluster.write_demo_env(tmp_path / "demo.env", tmp_path / "checkpoint.txt")
    env = mod.read_env_file(tmp_path / "demo.env")
    assert env["SLUICE_DATASERVICE_URL"] == f"http://127.0.0.1:{mod.LB_PORTS['dataservice']}"
    assert env["SLUICE_ACCESS_URL"] == cluster.urls["access"]
    assert env["SLUICE_DEMO_CHECKPOINT_FILE"] == str(tmp_path / "checkpoint.txt")


def test_without_haproxy_and_not_to_install_it_the_error_says_how_to_get_it(
        mod, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mod, "haproxy_path", lambda: None)
    balancer = __import__("balancer")
    monkeypatch.setattr(balancer, "haproxy_path", lambda: None)
    with pytest.raises(balancer.BalancerMissing, match="apt-get install haproxy"):
        balancer.ensure_haproxy(install=False)
