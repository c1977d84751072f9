"""What every Sluice service needs on Kubernetes, checked on the rendered base
and production overlay: a Deployment with probes and a locked-down pod, a
Service, a migration Job, a disruption budget, autoscaling where it is safe,
and settings the service really reads."""

from __future__ import annotations

import json
import re

import pytest

from shared.settings import DEFAULT_PORTS
from tests.deploy.manifests import (
    Doc,
    by_name,
    iter_containers,
    of_kind,
    pod_spec,
    selects,
    serve_port,
    service_names,
    serving_service,
    settings_fields,
    split_image,
)

SERVICES = service_names()
#: Deployments that may scale out on load; the audit writer is one ordered writer.
STATELESS = {"catalog", "orders", "access", "dataservice", "audit-reader"}
SINGLE_WRITER = "audit-writer"


def deployments_serving(docs: list[Doc], service: str) -> list[Doc]:
    return [d for d in of_kind(docs, "Deployment")
            if serving_service(d["spec"]["template"]["spec"]["containers"][0]) == service]


def pod_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels


def test_services_folder_lists_the_five_services():
    # Guards the discovery the other tests rely on.
    assert set(SERVICES) >= {"catalog", "orders", "access", "audit", "dataservice"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_deployment_service_and_migration_job(overlay, service):
    _, docs = overlay
    deployments = deployments_serving(docs, service)
    assert deployments, f"no Deployment runs `services.{service} serve`"
    services = by_name(docs, "Service")
    assert service in services, f"no Service named {service}"
    selected = [d for d in deployments if selects(services[service]["spec"]["selector"], pod_labels(d))]
    assert len(selected) == 1, f"Service {service} should select exactly one of its Deployments' pods"
    jobs = [j for j in of_kind(docs, "Job") if j["spec"]["template"]["spec"]["containers"][0]["args"]
            == [f"services.{service}", "migrate"]]
    assert len(jobs) == 1, f"expected one migration Job running `services.{service} migrate`"


@pytest.mark.parametrize("service", SERVICES)
def test_migration_job_uses_the_same_settings_as_the_service(overlay, service):
    _, docs = overlay
    (job,) = [j for j in of_kind(docs, "Job") if j["metadata"]["name"] == f"{service}-migrate"]
    job_env = job["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    for deployment in deployments_serving(docs, service):
        assert deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"] == job_env
    spec = job["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["backoffLimit"] <= 5 and spec["activeDeadlineSeconds"] > 0


def test_deployments_probe_readyz_for_readiness_and_healthz_for_liveness(overlay):
    _, docs = overlay
    for deployment in of_kind(docs, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port = serve_port(container)
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        name = deployment["metadata"]["name"]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe}"
            assert named.get(get["port"], get["port"]) == port, f"{name} {probe} must ask the served port"
        assert container["readinessProbe"]["periodSeconds"] <= 10


def test_containers_keep_the_image_entrypoint_and_serve_on_the_default_port(overlay):
    _, docs = overlay
    for container in iter_containers(docs):
        # `command` would replace the image's `python -m` ENTRYPOINT.
        assert "command" not in container, container["name"]
        assert container["args"][0].startswith("services.")
        service = serving_service(container)
        if service:
            assert serve_port(container) == DEFAULT_PORTS[service]
            assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"


def test_pods_run_as_non_root_with_a_read_only_root_filesystem(overlay):
    """Pod Security "restricted" and then some, for every pod (servers and Jobs)."""
    _, docs = overlay
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0 and pod["runAsGroup"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        assert "hostNetwork" not in spec and "hostPID" not in spec, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert sc.get("privileged", False) is False, name
            # A read-only root needs a writable /tmp.
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name


def test_every_container_has_resource_requests_and_limits(overlay):
    _, docs = overlay
    for container in iter_containers(docs):
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{container['name']} {kind}"


def test_every_deployment_has_a_disruption_budget_that_allows_drains(overlay):
    _, docs = overlay
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        mine = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(deployment))]
        assert len(mine) == 1, f"{name}: expected one PodDisruptionBudget"
        spec = mine[0]["spec"]
        replicas = deployment["spec"]["replicas"]
        if "minAvailable" in spec:
            # minAvailable equal to the replica count would block every node drain.
            assert 1 <= spec["minAvailable"] < replicas, name
        else:
            assert spec["maxUnavailable"] >= 1, name


def test_stateless_deployments_autoscale_and_the_audit_writer_does_not(overlay):
    _, docs = overlay
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    deployments = by_name(docs, "Deployment")
    assert set(deployments) == STATELESS | {SINGLE_WRITER}
    assert set(hpas) == STATELESS
    for name in STATELESS:
        spec = hpas[name]["spec"]
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
        # An apply starts at the floor the autoscaler keeps, never below it.
        assert deployments[name]["spec"]["replicas"] == spec["minReplicas"], name
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert "cpu" in container["resources"]["requests"], "CPU utilisation is measured against requests"
    assert deployments[SINGLE_WRITER]["spec"]["replicas"] == 1


def test_rolling_updates_never_drop_below_the_replica_count(overlay):
    _, docs = overlay
    for deployment in of_kind(docs, "Deployment"):
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1


def test_settings_are_ones_the_services_read(overlay):
    """Every key of every ConfigMap and Secret a service loads is SLUICE_<SERVICE>_<field>
    for a field its settings class has: a typo would be silently ignored at run time."""
    _, docs = overlay
    config = {**by_name(docs, "ConfigMap"), **by_name(docs, "Secret")}
    for deployment_or_job in [*of_kind(docs, "Deployment"), *of_kind(docs, "Job")]:
        container = deployment_or_job["spec"]["template"]["spec"]["containers"][0]
        service = container["args"][0].split(".", 1)[1]
        prefix = f"SLUICE_{service.upper()}_"
        fields = settings_fields(service)
        for source in container["envFrom"]:
            ref = source.get("configMapRef") or source["secretRef"]
            assert ref["name"].startswith(f"{service}-"), "a service loads only its own settings"
            if ref["name"] not in config:
                continue  # production Secrets come from the secret manager
            doc = config[ref["name"]]
            for key in {**doc.get("data", {}), **doc.get("stringData", {})}:
                assert key.startswith(prefix), f"{ref['name']}: {key}"
                assert key[len(prefix):].lower() in fields, f"{ref['name']}: {key} is not a setting"


def test_every_referenced_config_map_exists(overlay):
    _, docs = overlay
    maps = by_name(docs, "ConfigMap")
    for container in iter_containers(docs):
        for source in container["envFrom"]:
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in maps


def test_base_secrets_hold_only_marked_placeholders(rendered):
    secrets = of_kind(rendered["base"], "Secret")
    assert {s["metadata"]["name"] for s in secrets} == {f"{s}-secrets" for s in SERVICES}
    for secret in secrets:
        assert "data" not in secret, "placeholders stay readable (stringData)"
        for key, value in secret["stringData"].items():
            if key.endswith("BOOTSTRAP_SERVICE_CLIENTS"):
                assert all("PLACEHOLDER" in v for v in json.loads(value).values())
            else:
                assert "PLACEHOLDER" in value, f"{secret['metadata']['name']}: {key}"


def test_base_service_client_placeholders_agree_with_access_bootstrap(rendered):
    """On a test cluster the base must work as applied: each service's client
    secret is the one access creates for it."""
    secrets = by_name(rendered["base"], "Secret")
    maps = by_name(rendered["base"], "ConfigMap")
    clients = json.loads(secrets["access-secrets"]["stringData"]["SLUICE_ACCESS_BOOTSTRAP_SERVICE_CLIENTS"])
    for service in SERVICES:
        prefix = f"SLUICE_{service.upper()}_"
        secret = secrets[f"{service}-secrets"]["stringData"].get(prefix + "SERVICE_CLIENT_SECRET")
        if secret is None:
            continue
        client_id = maps[f"{service}-config"]["data"].get(prefix + "SERVICE_CLIENT_ID", f"svc-{service}")
        assert clients.get(client_id) == secret, service


def test_database_urls_use_asyncpg_with_tls_and_one_database_per_service(rendered):
    secrets = by_name(rendered["base"], "Secret")
    databases = set()
    for service in SERVICES:
        url = secrets[f"{service}-secrets"]["stringData"][f"SLUICE_{service.upper()}_DATABASE_URL"]
        match = re.fullmatch(r"postgresql\+asyncpg://[^@]+@[^/]+/([a-z_]+)\?ssl=require", url)
        assert match, url
        databases.add(match.group(1))
    assert len(databases) == len(SERVICES)


def test_production_deletes_placeholder_secrets_and_pins_the_image(rendered):
    docs = rendered["production"]
    assert of_kind(docs, "Secret") == []
    images = {c["image"] for c in iter_containers(docs)}
    assert len(images) == 1, "every service and Job runs the same image"
    (image,) = images
    name, tag, digest = split_image(image)
    assert "/" in name, "a registry path, not a local image"
    assert digest or (tag and tag not in {"latest", "dev"}), image


def test_internal_urls_name_services_and_their_ports(overlay):
    _, docs = overlay
    services = by_name(docs, "Service")
    for cm in of_kind(docs, "ConfigMap"):
        for key, value in cm["data"].items():
            match = re.fullmatch(r"http://([a-z-]+):(\d+)", value)
            if not match:
                continue
            host, port = match.group(1), int(match.group(2))
            assert host in services, f"{cm['metadata']['name']} {key}: no Service {host}"
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}, f"{key}: port {port}"


def test_events_go_to_the_audit_writer_and_tokens_name_the_access_public_url(overlay):
    _, docs = overlay
    maps = by_name(docs, "ConfigMap")
    services = by_name(docs, "Service")
    writer = by_name(docs, "Deployment")[SINGLE_WRITER]
    access_public = maps["access-config"]["data"]["SLUICE_ACCESS_PUBLIC_URL"]
    for service in SERVICES:
        data = maps[f"{service}-config"]["data"]
        prefix = f"SLUICE_{service.upper()}_"
        match = re.fullmatch(r"http://([a-z-]+):\d+", data[prefix + "AUDIT_URL"])
        assert match, data[prefix + "AUDIT_URL"]
        host = match.group(1)
        assert selects(services[host]["spec"]["selector"], pod_labels(writer)), service
        # Access signs with iss = its PUBLIC_URL; everyone else must expect exactly that.
        assert data.get(prefix + "TOKEN_ISSUER", access_public) == access_public, service
        assert data[prefix + "PUBLIC_URL"].startswith("https://"), service


def test_every_object_lives_in_the_sluice_namespace_with_pod_security_enforced(overlay):
    _, docs = overlay
    (namespace,) = of_kind(docs, "Namespace")
    assert namespace["metadata"]["name"] == "sluice"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "sluice", doc["metadata"]["name"]
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sluice"


def test_the_ingress_routes_to_public_services_only(overlay):
    _, docs = overlay
    services = by_name(docs, "Service")
    (ingress,) = of_kind(docs, "Ingress")
    backends = set()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] in services
            assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
            backends.add(backend["name"])
    assert backends == set(SERVICES), "one public host per service; never the audit writer"
    assert ingress["spec"]["tls"], "TLS at the edge"


def test_rollout_phase_labels_let_config_and_migrations_apply_first(overlay):
    """docs/deployment.md applies `-l sluice.dev/rollout-phase=prepare` first: it must hold
    everything a migration Job needs, and no long-running workload."""
    _, docs = overlay
    prepare = {(d["kind"], d["metadata"]["name"]) for d in docs
               if d["metadata"].get("labels", {}).get("sluice.dev/rollout-phase") == "prepare"}
    for job in of_kind(docs, "Job"):
        assert ("Job", job["metadata"]["name"]) in prepare
        for source in job["spec"]["template"]["spec"]["containers"][0]["envFrom"]:
            if "configMapRef" in source:
                assert ("ConfigMap", source["configMapRef"]["name"]) in prepare
    assert ("Namespace", "sluice") in prepare
    assert not {kind for kind, _ in prepare} & {"Deployment", "HorizontalPodAutoscaler", "Service"}
