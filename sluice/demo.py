"""`make demo`: the Sluice story, step by step, against a running marketplace.

Each step prints the HTTP calls it makes (method, URL, status, a body excerpt),
so the demo doubles as API documentation. Run `make run` in another terminal
first (or let `make demo` start it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from sluice.client import ApiError, Endpoints, SluiceClient

TTY = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def _c(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if TTY else text


BOLD, DIM, GREEN, RED, CYAN, YELLOW, MAGENTA = "1", "2", "32", "31", "36", "33", "35"


class Story:
    def __init__(self, quiet_http: bool = False) -> None:
        self.step_no = 0
        self.quiet_http = quiet_http

    def step(self, who: str, text: str) -> None:
        self.step_no += 1
        print(f"\n{_c(BOLD, f'{self.step_no:>2}.')} {_c(MAGENTA, f'[{who}]')} {_c(BOLD, text)}")

    def ok(self, text: str) -> None:
        print(f"    {_c(GREEN, '✔')} {text}")

    def refused(self, text: str) -> None:
        print(f"    {_c(YELLOW, '⛔')} {text}")

    def info(self, text: str) -> None:
        print(f"    {_c(DIM, text)}")

    def http(self, method: str, url: str, body: dict[str, Any] | None, resp: httpx.Response) -> None:
        """Print the call as it went over the wire: its headers that matter, and the body
        exactly as sent (a form for /oauth/token, JSON elsewhere)."""
        if self.quiet_http:
            return
        colour = GREEN if resp.status_code < 300 else YELLOW if resp.status_code < 500 else RED
        print(f"    {_c(CYAN, method):<6} {url} → {_c(colour, str(resp.status_code))}")
        for line in sent(resp.request):
            print(f"      {_c(DIM, line)}")

    @contextmanager
    def progress(self, text: str) -> Iterator[Callable[[str], None]]:
        """A spinner for steps that wait on something asynchronous."""
        state = {"msg": text}
        stop = threading.Event()

        def spin() -> None:
            for ch in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
                if stop.is_set():
                    break
                if TTY:
                    print(f"\r    {_c(CYAN, ch)} {state['msg']}\033[K", end="", flush=True)
                time.sleep(0.1)

        t = threading.Thread(target=spin, daemon=True)
        t.start()
        start = time.monotonic()
        try:
            yield lambda m: state.__setitem__("msg", m)
        finally:
            stop.set()
            t.join()
            if TTY:
                print("\r\033[K", end="")
            self.ok(f"{text} ({time.monotonic() - start:.1f}s)")


#: Request headers worth showing: how the call authenticates and what makes it safe to retry.
SHOWN_HEADERS = ("authorization", "content-type", "idempotency-key")


def sent(request: httpx.Request) -> list[str]:
    """The request's interesting headers (credentials elided) and its body as sent."""
    lines = []
    for name in SHOWN_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "authorization":
            value = value.split(" ", 1)[0] + " …"
        lines.append(f"{name.title()}: {value}")
    body = request.content.decode("utf-8", "replace")
    if body:
        lines.append("body: " + (body if len(body) < 160 else body[:157] + "..."))
    return lines


def read_dev_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip().strip("'")
    return env


def product_specs(data_service_url: str, suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    rights = {"resource_holder": "City of Example", "processing_right_holder": "Example Data Lab",
              "operating_right_holder": "Example Data Lab", "provenance": "Synthetic demo data",
              "licence": "CC-BY-4.0"}
    transit = {
        "slug": f"transit-stats-{suffix}", "title": "District public transport statistics",
        "summary": "Monthly trips, delays and punctuality per district and transport mode.",
        "description": "Open statistics for planners and researchers.",
        "category": "mobility", "tags": ["transport", "open-data"],
        "grade": "L1_public", "personal_data": "none", "rights": rights,
        "schema": {"fields": [
            {"name": "district", "type": "string"}, {"name": "year", "type": "integer"},
            {"name": "month", "type": "integer"}, {"name": "mode", "type": "string"},
            {"name": "trips", "type": "integer"}, {"name": "avg_delay_min", "type": "number"},
            {"name": "on_time_pct", "type": "number"}]},
        "delivery": {"data_service_url": data_service_url, "mode": "rows", "max_rows": 1000},
        "usage_policy": {"allowed_purposes": ["research", "planning"], "max_duration_days": 365,
                         "resale_allowed": False, "territories": ["EU"]},
        "plans": [{"name": "Open access", "kind": "free", "currency": "EUR", "access_days": 30,
                   "query_quota": 1000}],
    }
    health = {
        "slug": f"health-visits-{suffix}", "title": "De-identified health-service visits",
        "summary": "Visits, costs and waiting times of synthetic residents, aggregates only.",
        "description": "De-identified records served only as differentially private aggregates "
                       "(one person per privacy unit; one budget per month for all buyers).",
        "category": "health", "tags": ["health", "waiting-times"],
        "grade": "L3_sensitive", "personal_data": "deidentified",
        "deidentification": {"method": "pseudonymisation and generalisation (age bands)", "k": 10,
                             "date": "2026-11-01", "attested_by": "Dr. A. Example, DPO"},
        "rights": rights,
        "schema": {"fields": [
            {"name": "district", "type": "string"}, {"name": "age_band", "type": "string"},
            {"name": "sex", "type": "string"}, {"name": "year", "type": "integer"},
            {"name": "service", "type": "string"}, {"name": "cost_eur", "type": "integer"},
            {"name": "wait_days", "type": "integer"},
            {"name": "person_id", "type": "string", "personal": True, "masked": True}]},
        "delivery": {"data_service_url": data_service_url, "mode": "aggregates",
                     "min_group_size": 10, "epsilon_budget": 2.0},
        "usage_policy": {"allowed_purposes": ["research"], "max_duration_days": 365,
                         "resale_allowed": False, "territories": ["EU"]},
        "plans": [{"name": "Research licence", "kind": "one_time", "currency": "EUR", "price": 4900,
                   "access_days": 30, "query_quota": 100, "epsilon": 2.0, "query_epsilon": 0.5}],
    }
    return transit, health


def show_private_answer(story: Story, result: dict[str, Any]) -> None:
    """A differentially private answer as a buyer reads it: noisy values with their 95 %
    intervals, what was charged and what is left."""
    privacy = result["privacy"]
    count, mean = result["accuracy"]
    story.ok(f"{len(result['rows'])} districts, {result['suppressed_groups']} withheld (noisy count below "
             f"k={privacy['min_group_size']}); charged ε {privacy['epsilon_charged']} "
             f"({count['mechanism']}, scale {count['scale']:.1f})")
    for row, (low, high) in zip(result["rows"], mean["ci95_intervals"], strict=True):
        story.info(f"  {row[0]:<13} visits {row[1]:>6} ± {count['ci95_half_width']:.0f}   "
                   f"mean cost {row[2]:>8.2f} € (95 %: {low:.0f}–{high:.0f})")
    budget = privacy["product_budget"]
    story.ok(f"product budget {budget['period']}: ε {budget['epsilon_remaining']:g} of "
             f"{budget['epsilon_total']:g} left for every buyer (renews {budget['renews_at']}); "
             f"this entitlement: ε {privacy['entitlement_epsilon_remaining']:g} left")


def bind_products(aliases_file: Path, transit_id: str, health_id: str) -> None:
    """The provider binds the catalog ids of its products to its data service's mapped
    products (what `python -m services.dataservice bind` does); the data service re-reads
    the file when it changes."""
    from services.dataservice.aliases import bind

    demo = {"prd_demo_transit", "prd_demo_health"}
    bind(aliases_file, transit_id, "prd_demo_transit", demo)
    bind(aliases_file, health_id, "prd_demo_health", demo)


def run(args: argparse.Namespace) -> int:
    story = Story(quiet_http=args.quiet)
    env = read_dev_env(Path(args.env_file))
    endpoints = Endpoints.from_env()
    data_url = os.environ.get("SLUICE_DATASERVICE_URL", "http://127.0.0.1:8010")
    suffix = uuid.uuid4().hex[:6]
    op_id = os.environ.get("SLUICE_OPERATOR_ID") or env.get("SLUICE_ACCESS_BOOTSTRAP_CLIENT_ID", "operator")
    op_secret = os.environ.get("SLUICE_OPERATOR_SECRET") or env.get("SLUICE_ACCESS_BOOTSTRAP_CLIENT_SECRET")
    if not op_secret:
        print("No operator secret: run `make run` first (it writes var/dev.env) "
              "or set SLUICE_OPERATOR_SECRET.")
        return 2
    trace = story.http
    operator = SluiceClient(op_id, op_secret, endpoints, trace=trace)

    story.step("operator", "Get a platform token (OAuth 2.0 client credentials)")
    operator.bearer()
    story.ok("operator token issued (RS256, verifiable with /.well-known/jwks.json)")

    story.step("operator", "Onboard a provider, a buyer and a regulator, each with an API client")
    clients: dict[str, SluiceClient] = {}
    for role, name in (("provider", "Example Data Lab"), ("buyer", "Acme Research"),
                       ("regulator", "Data Protection Authority")):
        org = operator.create_organisation(f"{name} {suffix}", [role])
        cred = operator.create_api_client(org["id"], f"{role} client")
        clients[role] = SluiceClient(cred["client_id"], cred["client_secret"], endpoints, trace=trace)
        story.ok(f"{role}: organisation {org['id']}, client {cred['client_id']} (secret shown once)")
    provider, buyer, regulator = clients["provider"], clients["buyer"], clients["regulator"]

    story.step("provider", "Register an L1 open product and an L3 de-identified product")
    transit_spec, health_spec = product_specs(data_url, suffix)
    transit = provider.create_product(transit_spec)
    health = provider.create_product(health_spec)
    story.ok(f"drafts {transit['id']} (L1_public) and {health['id']} (L3_sensitive, k=10)")
    listed = provider.submit_product(transit["id"])
    story.ok(f"L1 product submitted → {listed['status']} (self-service)")
    review = provider.submit_product(health["id"])
    story.ok(f"L3 product submitted → {review.get('pending_draft') or review['status']} (needs a regulator)")

    story.step("regulator", "Review and approve the L3 product")
    queue = regulator.review_queue()
    story.info(f"review queue: {[p['product_id'] for p in queue['items']]}")
    approved = regulator.approve_product(health["id"], "Attestation checked: k=10, aggregates only.")
    story.ok(f"approved → {approved['status']}, version {approved['version']} frozen")

    story.step("provider", "Point the data service at the listed products")
    bind_products(Path(args.aliases_file), transit["id"], health["id"])
    story.ok(f"{transit['id']} → prd_demo_transit, {health['id']} → prd_demo_health "
             f"(in {args.aliases_file}; the data service picks it up without a restart)")

    story.step("buyer", "Search the catalog")
    found = buyer.search_products("health visits")
    story.ok(f"{len(found['items'])} result(s); first: {found['items'][0]['title']!r}")

    story.step("buyer", "Get a quote and order for a declared purpose")
    plan = approved["plans"][0]
    quote = buyer.quote(health["id"], approved["version"], plan["id"])
    story.ok(f"quote {quote['id']}: {quote['price']['total_display']} {quote['price']['currency']} "
             f"(platform fee {quote['price']['platform_fee']}, provider {quote['price']['provider_share']}), "
             f"valid until {quote['expires_at']}")
    story.info(f"  the plan sells a privacy budget of ε = {quote['access'].get('epsilon_budget')} "
               f"(ε {plan.get('query_epsilon')} per query unless the query asks for another)")
    try:
        buyer.create_order(quote["id"], "marketing")
    except ApiError as exc:
        story.refused(f"purpose 'marketing' refused: {exc.problem.get('detail')}")
    order = buyer.create_order(quote["id"], "research", idempotency_key=f"demo-{suffix}")
    story.ok(f"order {order['id']} is {order['status']}")

    story.step("buyer", "Pay through Stripe (localstripe) with a test card")
    order = buyer.pay_order(order["id"], "pm_card_visa")
    story.ok(f"payment submitted; order {order['status']}")
    with story.progress("waiting for the webhook, the ledger and the entitlement") as say:
        order = buyer.wait_for_order(order["id"], "fulfilled", timeout=60,
                                     on_wait=lambda o: say(f"order is {o['status']}…"))

    story.step("buyer", "Receive the entitlement and a short-lived data-access token")
    ents = [e for e in buyer.list_entitlements() if e.get("order_id") == order["id"]]
    ent = ents[0]
    story.ok(f"entitlement {ent['id']}: {ent['status']}, purpose {ent['purpose']}, "
             f"until {ent['valid_until']}")
    issued = buyer.issue_data_token(ent["id"])
    data_token = issued["access_token"]
    story.ok(f"data-access token (typ at+jwt, aud {ent.get('audience') or data_url}), "
             f"expires in {issued.get('expires_in')}s")

    story.step("buyer", "Run an aggregate query on the L3 product")
    with story.progress("waiting for the data service to load the new aliases"):
        deadline = time.monotonic() + 15
        while True:
            try:
                buyer.data_schema(data_url, data_token)
                break
            except ApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    result = buyer.query(data_url, data_token, {
        "select": ["district"],
        "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "cost_eur", "as": "avg_cost"}],
        "group_by": ["district"], "order_by": [{"column": "district", "dir": "asc"}],
        "epsilon": 0.5})
    show_private_answer(story, result)

    story.step("buyer", "Try a row-level query on the L3 product")
    try:
        buyer.query(data_url, data_token, {"select": ["district", "cost_eur"], "limit": 10})
        story.refused("unexpectedly allowed!")
        return 1
    except ApiError as exc:
        story.refused(f"refused with {exc.status}: {exc.problem.get('detail')}")

    story.step("regulator", "Trace the purchase in the audit log")
    with story.progress("waiting for every service's outbox to deliver"):
        time.sleep(2.5)
    trail = [*regulator.audit_events(subject_id=order["id"], limit=50)["items"],
             *regulator.audit_events(subject_id=ent["id"], limit=50)["items"]]
    for ev in sorted(trail, key=lambda e: e["seq"]):
        who = ev["actor"].get("role") or ev["actor"].get("sub") or f"{ev['service']} (system)"
        story.info(f"  #{ev['seq']:<5} {ev['action']:<34} {ev['outcome']:<8} by {who}")
    story.ok(f"{len(trail)} events about order {order['id']} and entitlement {ent['id']}")

    story.step("regulator", "See who spent the product's privacy budget (at the data service)")
    for product in regulator.privacy_budgets()["items"]:
        story.ok(f"{product['product_id']} ({', '.join(product['catalog_product_ids'])}), period "
                 f"{product['period']}: ε {product['epsilon_spent']:g} of {product['epsilon_total']:g} spent "
                 f"in {product['answers']} answers; renews {product['renews_at']}")
        for org in product["by_organisation"]:
            story.info(f"  {org['organisation_id']}: ε {org['epsilon']:g} in {org['answers']} answers")

    story.step("buyer", "See what is left of the product's budget in the catalog (a labelled copy)")
    with story.progress("waiting for the data service's budget report to reach the catalog"):
        deadline = time.monotonic() + 20
        while (copy := buyer.get_product(health["id"]).get("privacy_budget")) is None \
                and time.monotonic() < deadline:
            time.sleep(1)
    if copy is None:
        story.info("  not reported yet (the data service reports every few seconds)")
    else:
        story.ok(f"catalog: ε {copy['epsilon_remaining']:g} of {copy['epsilon_total']:g} left in "
                 f"{copy['period']} ({copy['source']}, as of {copy['as_of']})")

    story.step("regulator", "Verify the log cryptographically (standalone verifier)")
    from services.audit import verify

    # A regulator pins the verifier key the operator publishes out of band; the demo pins the one
    # the log serves now (without a pinned key the verifier reports a shortfall and exits 3).
    pinned = str(regulator.audit_public_key()["verifier_key"])
    story.info(f"  pinned verifier key {pinned}")
    code = verify.main(["--url", endpoints.audit, "--token", regulator.bearer(), "--public-key", pinned,
                        "--checkpoint-file", str(Path(args.checkpoint_file))])
    if code != 0:
        print(_c(RED, "verification failed"))
        return code
    done = "Done: the buyer used the data without seeing it, and the regulator verified every step."
    print("\n" + _c(GREEN + ";1", done))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sluice.demo", description=__doc__)
    p.add_argument("--env-file", default="var/dev.env", help="where `make run` keeps local secrets")
    p.add_argument("--aliases-file", default=os.environ.get("SLUICE_DATASERVICE_PRODUCT_ALIASES_FILE",
                                                           "var/dataservice-aliases.yaml"))
    p.add_argument("--checkpoint-file",
                   default=os.environ.get("SLUICE_DEMO_CHECKPOINT_FILE", "var/regulator-checkpoint.txt"),
                   help="the regulator's saved checkpoint (one per audit log: make cluster has its own)")
    p.add_argument("--quiet", action="store_true", help="do not print each HTTP call")
    args = p.parse_args(argv)
    try:
        return run(args)
    except ApiError as exc:
        print(_c(RED, f"\nstep failed: {exc}"))
        if exc.problem.get("errors"):
            print(json.dumps(exc.problem["errors"], indent=2))
        return 1
    except httpx.ConnectError as exc:
        print(_c(RED, f"\ncannot reach a service ({exc}); is `make run` running?"))
        return 2


if __name__ == "__main__":
    sys.exit(main())
