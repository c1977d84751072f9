"""Inputs found by fuzzing: a version number no database column can hold is the client's
mistake, a 4xx problem, never a 500."""

from __future__ import annotations

import pytest

from tests.catalog.conftest import Tokens, create_listed, spec
from tests.support import RunningApp


@pytest.mark.parametrize("version", ["99999999999999999999999", str(2**31), str(2**63), "-1", "0"])
async def test_an_impossible_version_number_is_a_4xx_problem(
    catalog: RunningApp, tokens: Tokens, version: str
) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    for path, headers in ((f"/v1/products/{pid}/versions/{version}", tokens.buyer),
                          (f"/internal/v1/products/{pid}/versions/{version}", tokens.service)):
        resp = await catalog.client.get(path, headers=headers)
        assert 400 <= resp.status_code < 500, (path, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    # The control: the real version is found.
    assert (await catalog.client.get(f"/v1/products/{pid}/versions/1", headers=tokens.buyer)).status_code == 200


@pytest.mark.parametrize("raw", ["prd_%00x", "prd_%1Ax", "prd_%0Ax", "prd_%7Fx"])
async def test_a_control_character_in_a_path_or_query_is_a_4xx_problem(
    catalog: RunningApp, tokens: Tokens, raw: str
) -> None:
    for path in (f"/v1/products/{raw}", f"/v1/products/{raw}/versions/1",
                 f"/v1/products?q={raw}", f"/v1/products?provider={raw}"):
        resp = await catalog.client.get(path, headers=tokens.buyer)
        assert 400 <= resp.status_code < 500, (path, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
