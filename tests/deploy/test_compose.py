"""deploy/compose.yaml: PostgreSQL, localstripe and every service, each started only
after PostgreSQL is healthy and its own migration has finished."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from shared.settings import DEFAULT_PORTS
from tests.deploy.manifests import DEPLOY, service_names, settings_fields

SERVICES = service_names()
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
APPS: dict[str, Any] = COMPOSE["services"]
INIT_SQL = (DEPLOY / "docker" / "postgres-init.sql").read_text()


def interpolate(value: str) -> str:
    """What compose makes of `${VAR:-default}` with VAR unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", lambda m: m.group(1), value)


def env(name: str) -> dict[str, str]:
    return {k: interpolate(str(v)) for k, v in APPS[name].get("environment", {}).items()}


def test_compose_names_postgres_localstripe_and_every_service():
    assert {"postgres", "localstripe", *SERVICES} <= set(APPS)
    assert {f"{s}-migrate" for s in SERVICES} <= set(APPS)


@pytest.mark.parametrize("service", SERVICES)
def test_service_serves_on_its_port_with_a_healthcheck(service):
    app = APPS[service]
    port = DEFAULT_PORTS[service]
    assert app["command"] == [f"services.{service}", "serve", "--host", "0.0.0.0", "--port", str(port)]
    assert app["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"} and len(app["healthcheck"]["test"]) > 1
    assert f"127.0.0.1:{port}:{port}" in app["ports"], "published on the host's loopback only"


@pytest.mark.parametrize("service", SERVICES)
def test_service_waits_for_healthy_postgres_and_its_finished_migration(service):
    depends = APPS[service]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends[f"{service}-migrate"]["condition"] == "service_completed_successfully"
    migrate = APPS[f"{service}-migrate"]
    assert migrate["command"] == [f"services.{service}", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["image"] == APPS[service]["image"]


def test_postgres_and_localstripe_have_healthchecks():
    for name in ("postgres", "localstripe"):
        assert APPS[name]["healthcheck"]["test"]


@pytest.mark.parametrize("service", SERVICES)
def test_environment_holds_only_settings_the_service_reads(service):
    prefix = f"SLUICE_{service.upper()}_"
    fields = settings_fields(service)
    for name in (service, f"{service}-migrate"):
        for key in env(name):
            assert key.startswith(prefix), f"{name}: {key}"
            assert key[len(prefix):].lower() in fields, f"{name}: {key} is not a setting"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_postgres_database_created_by_the_init_script(service):
    key = f"SLUICE_{service.upper()}_DATABASE_URL"
    url = env(service)[key]
    assert env(f"{service}-migrate")[key] == url, "the migration must upgrade the database the service uses"
    m = re.fullmatch(r"postgresql\+asyncpg://(\w+):([^@]+)@postgres:5432/(\w+)", url)
    assert m, url
    role, password, database = m.groups()
    assert f"CREATE ROLE {role} LOGIN PASSWORD '{password}';" in INIT_SQL
    assert f"CREATE DATABASE {database} OWNER {role};" in INIT_SQL


def test_databases_are_distinct():
    urls = {env(s)[f"SLUICE_{s.upper()}_DATABASE_URL"] for s in SERVICES}
    assert len(urls) == len(SERVICES)


def test_service_urls_name_compose_services_and_their_ports():
    for service in SERVICES:
        for key, value in env(service).items():
            if key.endswith("_URL") and value.startswith("http://"):
                match = re.fullmatch(r"http://([a-z-]+):(\d+)", value)
                assert match, f"{service} {key}: {value}"
                host, port = match.groups()
                assert host in APPS, f"{service} {key}"
                if host in DEFAULT_PORTS:
                    assert int(port) == DEFAULT_PORTS[host], f"{service} {key}"


def test_every_service_expects_the_issuer_access_signs_with():
    """Access signs with iss = its PUBLIC_URL; the others expect their ACCESS_URL
    unless TOKEN_ISSUER says otherwise."""
    issuer = env("access")["SLUICE_ACCESS_PUBLIC_URL"]
    for service in SERVICES:
        e = env(service)
        prefix = f"SLUICE_{service.upper()}_"
        expected = e.get(prefix + "TOKEN_ISSUER", e.get(prefix + "ACCESS_URL"))
        assert expected == issuer, service


def test_service_client_secrets_match_the_clients_access_creates():
    clients = json.loads(env("access")["SLUICE_ACCESS_BOOTSTRAP_SERVICE_CLIENTS"])
    for service in SERVICES:
        e = env(service)
        prefix = f"SLUICE_{service.upper()}_"
        if prefix + "SERVICE_CLIENT_SECRET" in e:
            client_id = e.get(prefix + "SERVICE_CLIENT_ID", f"svc-{service}")
            assert clients[client_id] == e[prefix + "SERVICE_CLIENT_SECRET"], service
        elif service != "access":  # access signs its own service token
            pytest.fail(f"{service} has no service client secret: its outbox would never deliver")


def test_orders_talks_to_localstripe_which_signs_webhooks_with_the_same_secret():
    orders = env("orders")
    assert orders["SLUICE_ORDERS_STRIPE_API_BASE"] == "http://localstripe:8420"
    assert APPS["orders"]["depends_on"]["localstripe"]["condition"] == "service_healthy"
    registration = interpolate(APPS["localstripe-webhook"]["command"][0])
    assert f'"secret": "{orders["SLUICE_ORDERS_STRIPE_WEBHOOK_SECRET"]}"' in registration
    assert '"url": "http://orders:8002/v1/webhooks/stripe"' in registration


def test_placeholder_secrets_are_marked_as_development_only():
    for service in SERVICES:
        for key, value in env(service).items():
            if key.endswith(("_SECRET", "_PASSPHRASE")):
                assert "dev" in value, f"{service} {key} should read as a development placeholder"


def test_containers_are_locked_down():
    for service in SERVICES:
        app = APPS[service]
        assert app["read_only"] is True
        assert app["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in app["security_opt"]


def test_images_built_here_are_never_pulled():
    """Every container on a Sluice image has the build section, so `up` builds it
    instead of trying to pull a name no registry has."""
    for name, app in APPS.items():
        if app["image"].startswith("${SLUICE_"):
            assert app["build"]["dockerfile"] == "deploy/docker/Dockerfile", name
            assert app["build"]["target"] in {"runtime", "localstripe"}, name
