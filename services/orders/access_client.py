"""What orders reads from the access service with its service token: a buyer
organisation (private offers go to real buyers only) and usage summaries (post-paid
metered billing). Commands to access go through the outbox, never through here."""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import ServiceUnavailable
from shared.service_auth import ServiceTokenProvider, TokenSource


class AccessClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, token: TokenSource | None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        if self.token is None:
            raise ServiceUnavailable(
                "The orders service has no service credentials to read the access service; the "
                "operator must set SLUICE_ORDERS_SERVICE_CLIENT_SECRET. Retry later.",
                problem="access-unavailable")
        url = f"{self.base_url}{path}"
        try:
            resp = await self.http.get(url, params=params,
                                       headers={"Authorization": f"Bearer {await self.token()}"})
            if resp.status_code == 401 and isinstance(self.token, ServiceTokenProvider):
                self.token.invalidate()
                resp = await self.http.get(url, params=params,
                                           headers={"Authorization": f"Bearer {await self.token()}"})
        except (httpx.HTTPError, RuntimeError) as exc:
            raise ServiceUnavailable(f"The access service could not be reached ({type(exc).__name__}); "
                                     "retry in a moment.", problem="access-unavailable") from exc
        if resp.status_code >= 500 or resp.status_code in (401, 403):
            raise ServiceUnavailable(f"The access service answered {resp.status_code}; retry in a moment.",
                                     problem="access-unavailable")
        return resp

    async def organisation(self, org_id: str) -> dict[str, Any] | None:
        """The organisation, or None when access does not know it."""
        resp = await self._get(f"/v1/organisations/{org_id}")
        if resp.status_code == 404:
            return None
        body: dict[str, Any] = resp.json()
        return body

    async def usage_since(self, entitlement_id: str, after_seq: int) -> tuple[int, int]:
        """(queries recorded after ``after_seq``, the last sequence number counted)."""
        resp = await self._get("/v1/usage/summary",
                               {"entitlement_id": entitlement_id, "after_seq": after_seq})
        if resp.status_code != 200:
            raise ServiceUnavailable(f"The access service answered {resp.status_code} for the usage of "
                                     f"{entitlement_id}; retry in a moment.", problem="access-unavailable")
        body = resp.json()
        return int(body["queries"]), int(body["last_seq"])
