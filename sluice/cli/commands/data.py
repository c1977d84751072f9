"""Queries at a data service, with a data-access token (`sluice tokens issue`)."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

import typer

from sluice.cli.core import EXIT_USAGE, Api, JsonFile, JsonText, command, fail, group, load_document

query = group("query", "Ask a data service: its schema, structured queries (data-access token).")

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
