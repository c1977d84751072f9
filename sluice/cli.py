"""``sluice``: the command line on the SDK.

Credentials: ``--client-id/--client-secret`` (or ``SLUICE_CLIENT_ID`` /
``SLUICE_CLIENT_SECRET``), or a ready token with ``--token`` (``SLUICE_TOKEN``).
Service URLs: ``SLUICE_ACCESS_URL``, ``SLUICE_CATALOG_URL``, ``SLUICE_ORDERS_URL``,
``SLUICE_AUDIT_URL`` (default: the local ports of ``make run``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.client import ApiError, Endpoints, SluiceClient

Handler = Callable[[SluiceClient, argparse.Namespace], Any]


# --- output -------------------------------------------------------------------

def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def render_table(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if isinstance(data, list):
        if not data:
            return "(nothing)"
        if not all(isinstance(r, dict) for r in data):
            return "\n".join(_cell(r) for r in data)
        cols = [k for k, v in data[0].items() if not isinstance(v, dict | list)][:7] or list(data[0])[:7]
        rows = [[_cell(r.get(c)) for c in cols] for r in data]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

        return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in rows)])
    if isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in data.items())
    return str(data)


def emit(data: Any, output: str) -> None:
    if output == "json" or isinstance(data, str):
        print(data if isinstance(data, str) else json.dumps(data, indent=2, default=str))
    else:
        print(render_table(data))


def _json_arg(text: str | None, file: str | None) -> dict[str, Any]:
    if file:
        return dict(json.loads(Path(file).read_text()))
    if text:
        return dict(json.loads(text))
    raise SystemExit("give --json '{...}' or --file PATH")


# --- commands --------------------------------------------------------------------

def build_parser() -> tuple[argparse.ArgumentParser, dict[tuple[str, ...], Handler]]:
    p = argparse.ArgumentParser(prog="sluice", description="Sluice marketplace command line")
    p.add_argument("--output", "-o", choices=["json", "table"], default="table")
    p.add_argument("--client-id", default=os.environ.get("SLUICE_CLIENT_ID"))
    p.add_argument("--client-secret", default=os.environ.get("SLUICE_CLIENT_SECRET"))
    p.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"),
                   help="use this platform token instead of client credentials")
    groups = p.add_subparsers(dest="group", required=True)
    handlers: dict[tuple[str, ...], Handler] = {}

    def command(group: str, name: str, help_text: str, fn: Handler) -> argparse.ArgumentParser:
        if group not in subs:
            subs[group] = groups.add_parser(group).add_subparsers(dest="command", required=True)
        handlers[(group, name)] = fn
        parser: argparse.ArgumentParser = subs[group].add_parser(name, help=help_text)
        return parser

    subs: dict[str, Any] = {}

    command("token", "show", "print a platform token for your client",
            lambda c, a: {"access_token": c.bearer()})
    command("me", "show", "who your token says you are", lambda c, a: c.me())

    s = command("orgs", "create", "onboard an organisation (operator)",
                lambda c, a: c.create_organisation(a.name, a.roles.split(",")))
    s.add_argument("--name", required=True)
    s.add_argument("--roles", required=True, help="comma-separated: provider,buyer,regulator,operator")
    s = command("clients", "create", "create an API client; prints its secret once (operator)",
                lambda c, a: c.create_api_client(a.org, a.name, a.roles.split(",") if a.roles else None))
    s.add_argument("--org", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--roles")

    s = command("products", "search", "search listed products",
                lambda c, a: c.search_products(a.q, category=a.category, tag=a.tag, grade=a.grade,
                                               plan_kind=a.plan_kind, sort=a.sort, limit=a.limit))
    s.add_argument("--q")
    s.add_argument("--category")
    s.add_argument("--tag")
    s.add_argument("--grade")
    s.add_argument("--plan-kind")
    s.add_argument("--sort", choices=["relevance", "newest", "price"])
    s.add_argument("--limit", type=int)
    s = command("products", "get", "one product", lambda c, a: c.get_product(a.product_id))
    s.add_argument("product_id")
    s = command("products", "create", "create a product draft from a JSON spec (provider)",
                lambda c, a: c.create_product(_json_arg(a.json, a.file)))
    s.add_argument("--file")
    s.add_argument("--json")
    s = command("products", "submit", "submit a draft (provider)",
                lambda c, a: c.submit_product(a.product_id))
    s.add_argument("product_id")
    s = command("products", "approve", "approve a draft under review (regulator)",
                lambda c, a: c.approve_product(a.product_id, a.note))
    s.add_argument("product_id")
    s.add_argument("--note", required=True)
    command("products", "review-queue", "drafts waiting for review (regulator)",
            lambda c, a: c.review_queue())

    s = command("quotes", "create", "price a plan (buyer)",
                lambda c, a: c.quote(a.product, a.version, a.plan, periods=a.periods, quantity=a.quantity))
    s.add_argument("--product", required=True)
    s.add_argument("--version", type=int, required=True)
    s.add_argument("--plan", required=True)
    s.add_argument("--periods", type=int, default=1)
    s.add_argument("--quantity", type=int, default=0)
    s = command("orders", "create", "order from a quote for a declared purpose (buyer)",
                lambda c, a: c.create_order(a.quote, a.purpose, a.idempotency_key))
    s.add_argument("--quote", required=True)
    s.add_argument("--purpose", required=True)
    s.add_argument("--idempotency-key")
    s = command("orders", "pay", "pay server-side with a payment method (buyer)",
                lambda c, a: c.pay_order(a.order_id, a.payment_method))
    s.add_argument("order_id")
    s.add_argument("--payment-method", default="pm_card_visa")
    s = command("orders", "get", "one order", lambda c, a: c.get_order(a.order_id))
    s.add_argument("order_id")
    command("orders", "list", "orders you may see", lambda c, a: c.list_orders())
    s = command("orders", "refund", "refund an order (operator, or its provider)",
                lambda c, a: c.refund_order(a.order_id, a.reason))
    s.add_argument("order_id")
    s.add_argument("--reason", required=True)

    command("entitlements", "list", "entitlements you may see", lambda c, a: c.list_entitlements())
    s = command("tokens", "issue", "a short-lived data-access token for an entitlement (buyer)",
                lambda c, a: c.issue_data_token(a.entitlement_id))
    s.add_argument("entitlement_id")

    s = command("query", "run", "run a structured query at a data service",
                lambda c, a: c.query(a.url, a.data_token, _json_arg(a.json, a.file)))
    s.add_argument("--url", required=True, help="the data service (the token's audience)")
    s.add_argument("--data-token", required=True)
    s.add_argument("--json")
    s.add_argument("--file")
    s = command("query", "schema", "what the token's product exposes",
                lambda c, a: c.data_schema(a.url, a.data_token))
    s.add_argument("--url", required=True)
    s.add_argument("--data-token", required=True)

    s = command("audit", "events", "search the audit log (regulator)",
                lambda c, a: c.audit_events(action=a.action, subject_id=a.subject_id, limit=a.limit))
    s.add_argument("--action")
    s.add_argument("--subject-id")
    s.add_argument("--limit", type=int)
    command("audit", "checkpoint", "the latest signed checkpoint", lambda c, a: c.checkpoint())
    s = command("audit", "verify", "verify the log (runs the standalone verifier)", _verify)
    s.add_argument("verify_args", nargs=argparse.REMAINDER,
                   help="arguments for the verifier (see `sluice audit verify -- --help`)")
    return p, handlers


def _verify(client: SluiceClient, args: argparse.Namespace) -> Any:
    from services.audit import verify

    extra = [a for a in args.verify_args if a != "--"]
    if "--token" not in extra and "--client-id" not in extra:
        extra = ["--token", client.bearer(), *extra]
    if "--url" not in extra:
        extra = ["--url", client.endpoints.audit, *extra]
    code = verify.main(extra)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    key = (args.group, getattr(args, "command", None) or "show")
    client = SluiceClient(args.client_id, args.client_secret, Endpoints.from_env(), token=args.token)
    try:
        result = handlers[key](client, args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.problem.get("errors"):
            print(json.dumps(exc.problem["errors"], indent=2), file=sys.stderr)
        return 1
    finally:
        client.close()
    emit(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
