"""The NetworkPolicies allow exactly the calls the architecture needs.

A small evaluator applies the Kubernetes NetworkPolicy semantics to the rendered
policies: a connection from A to B on a port is allowed when A's egress allows it
(or no egress policy selects A) and B's ingress allows it (or no ingress policy
selects B). Peers are podSelector / namespaceSelector / both (AND) / ipBlock;
ipBlocks are taken to match addresses outside the cluster only, as intended.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.deploy.manifests import Doc, of_kind, selects

NAMESPACE = "sluice"

#: caller → callee, by Deployment name; `ingress-nginx` is the ingress controller.
EXPECTED_EDGES = {
    ("ingress-nginx", "catalog"), ("ingress-nginx", "orders"), ("ingress-nginx", "access"),
    ("ingress-nginx", "audit-reader"), ("ingress-nginx", "dataservice"),
    ("orders", "catalog"), ("orders", "access"), ("orders", "audit-writer"),
    ("access", "catalog"), ("access", "audit-writer"),
    ("catalog", "access"), ("catalog", "audit-writer"),
    ("dataservice", "access"), ("dataservice", "audit-writer"),
    # The audit service verifies tokens from the access JWKS (reads append their own events in-process).
    ("audit-writer", "access"), ("audit-reader", "access"),
}

STRIPE_IP = "54.187.174.169"  # a public address; Stripe's API is reached over 443
POSTGRES_IP = "10.20.0.5"  # inside the production overlay's managed-database range


@dataclass
class Endpoint:
    name: str
    namespace: str = NAMESPACE
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # named container ports
    ip: str | None = None  # endpoints outside the cluster

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def workload_endpoints(docs: list[Doc]) -> dict[str, Endpoint]:
    endpoints = {}
    for doc in [*of_kind(docs, "Deployment"), *of_kind(docs, "Job")]:
        template = doc["spec"]["template"]
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        endpoints[doc["metadata"]["name"]] = Endpoint(doc["metadata"]["name"], labels=template["metadata"]["labels"],
                                                      ports=ports)
    return endpoints


INGRESS_CONTROLLER = Endpoint("ingress-nginx", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
OTHER_NAMESPACE_POD = Endpoint("intruder", "default", {"app.kubernetes.io/name": "ingress-nginx"})
KUBE_DNS = Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"})


def peer_matches(peer: Doc, policy_namespace: str, target: Endpoint) -> bool:
    if "ipBlock" in peer:
        if target.ip is None:
            return False
        address = ipaddress.ip_address(target.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if target.ip is not None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], target.namespace_labels):
            return False
    elif target.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], target.labels)


def port_matches(rule: Doc, port: int, protocol: str, destination: Endpoint) -> bool:
    if not rule.get("ports"):
        return True
    for p in rule["ports"]:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        number = destination.ports.get(p["port"]) if isinstance(p["port"], str) else p["port"]
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def direction_allows(policies: list[Doc], kind: str, subject: Endpoint, other: Endpoint,
                     port: int, protocol: str, destination: Endpoint) -> bool:
    if subject.ip is not None or subject.namespace != NAMESPACE:
        return True  # outside the namespace our policies do not apply
    selecting = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"]["podSelector"], subject.labels)]
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(peer, NAMESPACE, other) for peer in peers)) and port_matches(
                rule, port, protocol, destination
            ):
                return True
    return False


def allowed(policies: list[Doc], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    return direction_allows(policies, "Egress", src, dst, port, protocol, dst) and direction_allows(
        policies, "Ingress", dst, src, port, protocol, dst
    )


@pytest.fixture
def world(overlay):
    _, docs = overlay
    return of_kind(docs, "NetworkPolicy"), workload_endpoints(docs)


def serving_port(endpoint: Endpoint) -> int:
    return endpoint.ports["http"]


def test_policies_allow_each_needed_call_and_nothing_else_between_services(world):
    policies, endpoints = world
    servers = {n: e for n, e in endpoints.items() if "http" in e.ports}
    sources = {**servers, INGRESS_CONTROLLER.name: INGRESS_CONTROLLER}
    edges = {(s, d) for s, src in sources.items() for d, dst in servers.items()
             if allowed(policies, src, dst, serving_port(dst))}
    assert edges == EXPECTED_EDGES, (
        f"missing: {sorted(EXPECTED_EDGES - edges)}; unexpected: {sorted(edges - EXPECTED_EDGES)}"
    )


def test_nothing_reaches_a_service_on_any_other_port(world):
    policies, endpoints = world
    sources = [*endpoints.values(), INGRESS_CONTROLLER]
    for dst in endpoints.values():
        for src in sources:
            for port in (22, 5432, 8080, 9090):
                assert not allowed(policies, src, dst, port), f"{src.name} → {dst.name}:{port}"


def test_pods_of_other_namespaces_cannot_call_any_service(world):
    policies, endpoints = world
    for dst in endpoints.values():
        if "http" in dst.ports:
            assert not allowed(policies, OTHER_NAMESPACE_POD, dst, serving_port(dst)), dst.name


def test_migration_jobs_take_no_connections(world):
    policies, endpoints = world
    jobs = [e for e in endpoints.values() if e.labels.get("app.kubernetes.io/component") == "migration"]
    assert len(jobs) == 5
    for job in jobs:
        for src in [*endpoints.values(), INGRESS_CONTROLLER]:
            assert not allowed(policies, src, job, 8000), f"{src.name} → {job.name}"


def test_every_pod_reaches_dns_and_postgresql(world):
    policies, endpoints = world
    postgres = Endpoint("postgres", ip=POSTGRES_IP)
    for src in endpoints.values():
        assert allowed(policies, src, KUBE_DNS, 53, "UDP"), src.name
        assert allowed(policies, src, KUBE_DNS, 53, "TCP"), src.name
        assert allowed(policies, src, postgres, 5432), src.name
        assert not allowed(policies, src, Endpoint("elsewhere", ip=POSTGRES_IP), 5433), src.name


def test_only_orders_reaches_the_internet_and_only_https(world):
    policies, endpoints = world
    stripe = Endpoint("stripe", ip=STRIPE_IP)
    for name, src in endpoints.items():
        assert allowed(policies, src, stripe, 443) == (name == "orders"), name
        assert not allowed(policies, src, stripe, 80), name
        # No way to the cloud metadata service or to private addresses over 443.
        assert not allowed(policies, src, Endpoint("metadata", ip="169.254.169.254"), 443), name
        assert not allowed(policies, src, Endpoint("private", ip="10.1.2.3"), 443), name


def test_evaluator_denies_when_one_side_is_missing():
    """A policy pair where the callee allows the caller but the caller's egress does not
    list the callee: the evaluator must deny (so the edge test can fail)."""
    a = Endpoint("a", labels={"app": "a"}, ports={"http": 1})
    b = Endpoint("b", labels={"app": "b"}, ports={"http": 2})
    policies: list[Doc] = [
        {"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {"spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": "http"}]}]}},
    ]
    assert not allowed(policies, a, b, 2)
    policies.append({"spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                              "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}})
    assert allowed(policies, a, b, 2)
    assert not allowed(policies, a, b, 3)
    assert not allowed(policies, b, a, 1)
