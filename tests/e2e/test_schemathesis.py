"""Schemathesis over every service's OpenAPI, against real processes: whatever the schema allows
(and some of what it does not), every operation answers without a 5xx and with a response its
schema documents. Each operation is called with a token its row of docs/security.md admits (a
platform token of an admitted role, a data-access token for the data service, none for public
routes), so generated input reaches the handlers instead of stopping at 401/403.

Bounded: at most 12 examples per operation (``SLUICE_FUZZ_EXAMPLES``), no shrinking, no
example database; operations that would change the platform under the test (signing-key
rotation, a Stripe webhook) are left out."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.market import Market
from tests.e2e.route_auth import control_role
from tests.security_table import rule, table_rows, who_may_call

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "12"))
#: (service, method, path) not fuzzed, and why.
LEFT_OUT = {
    ("access", "POST", "/v1/signing-keys/rotate"): "each call generates an RSA key: slow, and it is its own test",
    ("orders", "POST", "/v1/webhooks/stripe"): "needs a Stripe signature; tests/orders cover forged ones",
    ("access", "POST", "/v1/clients/me/rotate-secret"): "would end the fuzzing client's own secret",
}


@pytest.fixture(scope="module")
def fulfilled(market: Market) -> dict[str, str]:
    """A free L1 order the buyer holds, fulfilled: its ids are the fuzzer's real ids."""
    plan = market.transit["plans"][0]
    quote = market.buyer.quote(market.transit["id"], market.transit["version"], plan["id"])
    order = market.wait_for_status(market.buyer.create_order(quote["id"], "planning")["id"], "fulfilled")
    return {"quote_id": quote["id"], "order_id": order["id"], "entitlement_id": order["entitlement_id"]}


@pytest.fixture(scope="module")
def data_token(market: Market, fulfilled: dict[str, str]) -> str:
    """Issued before any fuzzing: the fuzzing may retire the product or suspend the buyer."""
    return str(market.buyer.issue_data_token(fulfilled["entitlement_id"])["access_token"])


def known_ids(market: Market, fulfilled: dict[str, str]) -> dict[str, str]:
    """Path parameters filled with ids that exist: a random id stops at the first lookup (404),
    and what fuzzing found (a 23-digit version of a real product) lies behind it."""
    return {"product_id": str(market.transit["id"]), "org_id": market.buyer_org, **fulfilled}


def _token_for(market: Market, service: str, method: str, path: str, data_token: str,
               service_token: str) -> str | None:
    who = who_may_call(table_rows(), service, method, path)
    if who is None:
        return None
    admits = rule(service, who)
    if admits.public:
        return None
    if admits.data_access:
        return data_token
    role = control_role(admits)
    if role == "service":
        return service_token
    party = {"provider": market.provider, "buyer": market.buyer, "regulator": market.regulator,
             "operator": market.operator}[role]
    return str(party.bearer())


def _with_known_ids(case: schemathesis.Case, known: dict[str, str]) -> schemathesis.Case:
    for name in list(case.path_parameters or {}):
        if name in known:
            case.path_parameters[name] = known[name]  # type: ignore[index]
    return case


def _fuzzer(op: schemathesis.APIOperation, base: str, headers: dict[str, str],
            calls: list[int], known: dict[str, str]) -> Callable[[], None]:
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy().map(lambda c: _with_known_ids(c, known)))
    def fuzz(case: schemathesis.Case) -> None:
        calls.append(1)
        case.call_and_validate(base_url=base, headers=headers, timeout=30,
                               checks=[not_a_server_error, response_schema_conformance])

    return fuzz  # type: ignore[no-any-return]


# In this order: the fuzzing may change the shared state (retire the product, suspend the buyer's
# organisation), so the services whose calls depend on it go first.
@pytest.mark.parametrize("service", ["dataservice", "orders", "audit", "access", "catalog"])
def test_no_operation_answers_5xx_or_off_schema(market: Market, data_token: str,
                                                fulfilled: dict[str, str], service: str) -> None:
    cluster = market.cluster
    base = cluster.urls[service]
    svc_token = httpx.post(f"{cluster.urls['access']}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=("svc-catalog", cluster.service_secrets["catalog"]), timeout=10).json()["access_token"]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    dtoken = data_token
    failures: list[str] = []
    checked = 0
    calls: list[int] = []
    known = known_ids(market, fulfilled)
    for result in schema.get_all_operations():
        op = result.ok()
        method, path = op.method.upper(), op.path
        if (service, method, path) in LEFT_OUT:
            continue
        token = _token_for(market, service, method, path, dtoken, svc_token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        fuzz = _fuzzer(op, base, headers, calls, known)
        try:
            fuzz()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            failures.append(f"{method} {path}: {str(exc).strip()[:1500]}")
        checked += 1
    assert checked >= 5 and len(calls) >= checked  # every operation was really called
    print(f"{service}: {len(calls)} generated requests over {checked} operations")
    assert not failures, f"{len(failures)} of {checked} operations failed:\n\n" + "\n\n".join(failures)
