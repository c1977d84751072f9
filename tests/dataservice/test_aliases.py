"""Catalog product ids bound to mapped products through the aliases file, live."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.conftest import AppFactory
from tests.dataservice.conftest import HEALTH, LIMITS, bearer
from tests.support import TestKeys

CATALOG_ID = "prd_5e0b1c9a2f3d4e6a"


def token_for(keys: TestKeys, audience: str, product: str) -> str:
    return keys.token(typ="at+jwt", aud=audience, roles=[], scope="query", ent="ent_alias",
                      product=product, version=1, purpose="research", grade="L3_sensitive",
                      limits=LIMITS, org="org_buyer", sub="cli_buyer")


async def test_an_alias_added_while_running_serves_the_catalog_id(
    service_app: AppFactory, demo_data_url: str, products_file: Path, tmp_path: Path, test_keys: TestKeys
) -> None:
    aliases = tmp_path / "aliases.yaml"
    async with service_app("dataservice", data_url=demo_data_url, products_file=str(products_file),
                           product_aliases_file=str(aliases)) as svc:
        token = token_for(test_keys, svc.settings.token_audience, CATALOG_ID)
        before = await svc.client.get("/v1/schema", headers=bearer(token))
        assert before.status_code == 403, before.text

        aliases.write_text(f"aliases:\n  {CATALOG_ID}: {HEALTH}\n")
        os.utime(aliases, (1, 1))  # a distinct mtime even within one clock tick
        for _ in range(40):
            resp = await svc.client.get("/v1/schema", headers=bearer(token))
            if resp.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert resp.status_code == 200, resp.text
        assert "cost_eur" in resp.text
        assert resp.json()["product_id"] == CATALOG_ID  # what the buyer bought, not the mapping id


async def test_an_alias_to_an_unmapped_product_is_ignored(
    service_app: AppFactory, demo_data_url: str, products_file: Path, tmp_path: Path, test_keys: TestKeys
) -> None:
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text(f"aliases:\n  {CATALOG_ID}: prd_not_mapped\n")
    async with service_app("dataservice", data_url=demo_data_url, products_file=str(products_file),
                           product_aliases_file=str(aliases)) as svc:
        token = token_for(test_keys, svc.settings.token_audience, CATALOG_ID)
        resp = await svc.client.get("/v1/schema", headers=bearer(token))
        assert resp.status_code == 403
