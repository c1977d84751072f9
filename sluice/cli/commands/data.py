"""Queries at a data service, with a data-access token (`sluice tokens issue`)."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

import typer

from sluice.cli.core import (
    EXIT_USAGE,
    AllPages,
    Api,
    Cursor,
    JsonFile,
    JsonText,
    Limit,
    command,
    fail,
    group,
    load_document,
    paged,
)

query = group("query", "Ask a data service: its schema, structured queries (data-access token).")
privacy = group("privacy", "A data service's privacy budgets and every charge (regulator, operator).")

DataToken = Annotated[str | None, typer.Option(
    help="the data-access token (`sluice tokens issue ENT --field access_token`).",
    envvar="SLUICE_DATA_TOKEN", show_envvar=True)]
Url = Annotated[str | None, typer.Option(
    help="the data service (default: the token's audience, else SLUICE_DATASERVICE_URL).")]


def audience(token: str) -> str | None:
    """The ``aud`` of a JWT, read without verifying (the data service verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    aud = claims.get("aud") if isinstance(claims, dict) else None
    return str(aud[0] if isinstance(aud, list) and aud else aud) if aud else None


def target(api: Api, token: str | None, url: str | None) -> tuple[str, str]:
    if not token:
        fail("no data-access token: give --data-token or set SLUICE_DATA_TOKEN "
             "(`sluice tokens issue ENT --field access_token`).", EXIT_USAGE)
    return (url or audience(token) or api.endpoints.dataservice), token


@command(query, "schema", calls="dataservice GET /v1/schema")
def schema(api: Api, data_token: DataToken = None, url: Url = None) -> Any:
    """What the token's product exposes: columns, types, grade, delivery mode, limits."""
    return api.data_schema(*target(api, data_token, url))


@command(query, "run", calls="dataservice POST /v1/query")
def run(api: Api, data_token: DataToken = None, url: Url = None, json_text: JsonText = None,
        file: JsonFile = None) -> Any:
    """Run a structured query; the answer has `columns` and `rows`."""
    base, token = target(api, data_token, url)
    answer = api.query(base, token, load_document(json_text, file))
    return answer


Product = Annotated[str | None, typer.Option(help="the data service's product (the mapped data set).")]
Period = Annotated[str | None, typer.Option(help="release period, e.g. 2026-11 (default: all).")]


@command(privacy, "budgets", calls="dataservice GET /v1/privacy/budgets",
         columns=["product_id", "period", "epsilon_total", "epsilon_spent", "epsilon_remaining", "answers",
                  "renews_at"])
def budgets(api: Api, product_id: Product = None, period: Period = None) -> Any:
    """Each product's privacy budget per period: total, spent, left, by organisation and entitlement."""
    return api.privacy_budgets(product_id=product_id, period=period)


@command(privacy, "charges", calls="dataservice GET /v1/privacy/charges",
         columns=["id", "created_at", "organisation_id", "entitlement_id", "epsilon", "delta", "usage_id"])
def charges(api: Api, product_id: Annotated[str, typer.Argument(help="the mapped product (prd_...).")],
            period: Period = None, limit: Limit = None, cursor: Cursor = None,
            all_pages: AllPages = False) -> Any:
    """Every charge to one product's privacy budget, oldest first (each is also an audit event)."""
    return paged(api.privacy_charges, all_pages=all_pages, cursor=cursor, limit=limit,
                 product_id=product_id, period=period)
