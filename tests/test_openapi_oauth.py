"""Every service's OpenAPI declares the OAuth 2.0 client-credentials flow (tokenUrl = the access
service's /oauth/token) beside the bearer scheme, so /docs can obtain a platform token."""

from __future__ import annotations

import pytest

from tests.support import SERVICES, app_factory


@pytest.mark.parametrize("service", SERVICES)
def test_platform_token_routes_offer_the_client_credentials_flow(service: str) -> None:
    spec = app_factory(service)().openapi()
    scheme = spec["components"]["securitySchemes"]["OAuth2ClientCredentials"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "http://127.0.0.1:8003/oauth/token"
    offered = [path for path, ops in spec["paths"].items() for op in ops.values()
               if {"OAuth2ClientCredentials": []} in (op.get("security") or [])]
    assert offered, "no route offers the flow"
    for path, ops in spec["paths"].items():
        for op in ops.values():
            security = op.get("security") or []
            if {"OAuth2ClientCredentials": []} in security:
                assert {"HTTPBearer": []} in security  # a pasted bearer token still works
            if service == "dataservice" and not path.startswith(("/v1/privacy", "/v1/outbox")):
                assert {"OAuth2ClientCredentials": []} not in security, path  # data-access tokens
