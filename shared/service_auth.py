"""Service-to-service calls: a cached client-credentials token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import httpx

TokenSource = Callable[[], Awaitable[str]]


class ServiceTokenProvider:
    """Gets a platform token for this service's own client and reuses it until
    shortly before it expires."""

    def __init__(
        self, http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str
    ) -> None:
        self.http = http
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        if self._token and time.monotonic() < self._expires:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._expires:
                return self._token
            resp = await self.http.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.client_secret),
            )
            if resp.status_code != 200:
                raise RuntimeError(
                    f"token request for {self.client_id} failed with {resp.status_code}: "
                    f"{resp.text[:200]}; check the service client id and secret settings"
                )
            body = resp.json()
            self._token = str(body["access_token"])
            # Renew a minute early (or halfway for short tokens).
            lifetime = float(body.get("expires_in", 300))
            self._expires = time.monotonic() + max(lifetime - 60, lifetime / 2)
            return self._token

    def invalidate(self) -> None:
        self._token = None


class ServiceTokenAuth(httpx.Auth):
    """``httpx`` auth carrying this service's own token: the bearer header on every request,
    and on a 401 one fresh token (the cached one is dropped) and one retry, so a token the
    receiver no longer accepts (expired early, keys rotated) costs a round trip, not a
    backoff. Every service-to-service caller uses it (outbox deliverers, revocation feed)."""

    def __init__(self, token: TokenSource) -> None:
        self.token = token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        response = yield request
        invalidate = getattr(self.token, "invalidate", None)
        if response.status_code == 401 and invalidate is not None:
            invalidate()
            request.headers["Authorization"] = f"Bearer {await self.token()}"
            yield request
