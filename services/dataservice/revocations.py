"""The revocation feed of the access service, cached in memory and polled.

Revoked token ids (jti) and entitlement ids are kept for the life of the process;
a restart refetches the feed from the beginning. If the access service cannot be
reached, the last known list stays in force and a warning is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from shared.service_auth import ServiceTokenProvider, TokenSource

logger = logging.getLogger("sluice.dataservice.revocations")


class RevocationList:
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.entitlements: set[str] = set()

    def add(self, kind: str, item_id: str) -> None:
        if kind == "token":
            self.tokens.add(item_id)
        elif kind == "entitlement":
            self.entitlements.add(item_id)

    def reason(self, jti: str | None, entitlement_id: str | None) -> str | None:
        """Why a token no longer counts, or None."""
        if entitlement_id and entitlement_id in self.entitlements:
            return "its entitlement has been revoked"
        if jti and jti in self.tokens:
            return "it has been revoked"
        return None


class RevocationPoller:
    """Follows ``GET {access}/v1/revocations?since=<cursor>`` page by page."""

    def __init__(self, revocations: RevocationList, http: httpx.AsyncClient, access_url: str,
                 token: TokenSource | None, *, interval: float = 15.0, max_pages: int = 100) -> None:
        self.revocations = revocations
        self.http = http
        self.url = f"{access_url.rstrip('/')}/v1/revocations"
        self.token = token
        self.interval = interval
        self.max_pages = max_pages
        self.cursor: str | None = None
        self.last_ok: bool = False

    async def poll_once(self) -> int:
        """Fetch everything new; return how many entries arrived. Raises on failure."""
        added = 0
        for _ in range(self.max_pages):
            params = {"since": self.cursor} if self.cursor else {}
            headers = {"Authorization": f"Bearer {await self.token()}"} if self.token else {}
            resp = await self.http.get(self.url, params=params, headers=headers)
            if resp.status_code == 401 and isinstance(self.token, ServiceTokenProvider):
                self.token.invalidate()
            resp.raise_for_status()
            body: dict[str, Any] = resp.json()
            items = body.get("items") or []
            for item in items:
                self.revocations.add(str(item.get("kind")), str(item.get("id")))
            added += len(items)
            nxt = body.get("next_cursor")
            if nxt:
                self.cursor = str(nxt)
            if not items or not nxt:
                break
        return added

    async def run_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
                self.last_ok = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_ok = False
                logger.warning("could not poll the revocation feed at %s (%s: %s); keeping the last "
                               "known list of %d tokens and %d entitlements", self.url,
                               type(exc).__name__, exc, len(self.revocations.tokens),
                               len(self.revocations.entitlements))
            await asyncio.sleep(self.interval)


@contextlib.asynccontextmanager
async def polling(poller: RevocationPoller) -> AsyncIterator[None]:
    task = asyncio.create_task(poller.run_forever(), name="revocation-feed")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
