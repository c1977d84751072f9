"""The revocation feed of the access service, cached in memory and polled.

Revoked token ids (jti) and entitlement ids are kept for the life of the process;
a restart refetches the feed from the beginning. If the access service cannot be
reached, the last known list stays in force and a warning is logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx

from shared.periodic import Periodic
from shared.service_auth import ServiceTokenAuth, TokenSource

logger = logging.getLogger("sluice.dataservice.revocations")


class RevocationList:
    """Revoked tokens, and revoked or suspended entitlements, as the feed says.

    Feed entries carry an ``event``: ``revoked`` (final), ``suspended`` (until a later
    ``reinstated`` for the same entitlement) or ``reinstated``; the latest entry wins.
    Revoked tokens are forgotten once they have expired anyway.
    """

    def __init__(self) -> None:
        self.tokens: dict[str, float | None] = {}  # jti → expiry (epoch seconds) or None
        self.entitlements: set[str] = set()  # revoked: final
        self.suspended: set[str] = set()

    def add(self, kind: str, item_id: str, event: str = "revoked",
            expires_at: float | None = None) -> None:
        if kind == "token":
            self.tokens[item_id] = expires_at
        elif kind == "entitlement":
            if event == "suspended":
                self.suspended.add(item_id)
            elif event == "reinstated":
                self.suspended.discard(item_id)
            else:
                self.entitlements.add(item_id)

    def add_item(self, item: dict[str, Any]) -> None:
        expires: float | None = None
        raw = item.get("expires_at")
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                expires = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        self.add(str(item.get("kind")), str(item.get("id")), str(item.get("event") or "revoked"),
                 expires)

    def forget_expired(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for jti in [j for j, exp in self.tokens.items() if exp is not None and exp < now - 120]:
            del self.tokens[jti]

    def reason(self, jti: str | None, entitlement_id: str | None) -> str | None:
        """Why a token no longer counts, or None."""
        if entitlement_id and entitlement_id in self.entitlements:
            return "its entitlement has been revoked"
        if entitlement_id and entitlement_id in self.suspended:
            return "its entitlement is suspended"
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
            auth = ServiceTokenAuth(self.token) if self.token else None
            resp = await self.http.get(self.url, params=params, auth=auth)
            resp.raise_for_status()
            body: dict[str, Any] = resp.json()
            items = body.get("items") or []
            for item in items:
                self.revocations.add_item(item)
            added += len(items)
            nxt = body.get("next_cursor")
            if nxt:
                self.cursor = str(nxt)
            more = body.get("has_more")
            if not items or not nxt or more is False:
                break
        self.revocations.forget_expired()
        return added

    async def poll_and_log(self) -> None:
        """One poll; a failure keeps the last known list (and says so) instead of raising."""
        try:
            await self.poll_once()
            self.last_ok = True
        except Exception as exc:
            self.last_ok = False
            logger.warning("could not poll the revocation feed at %s (%s: %s); keeping the last "
                           "known list of %d tokens and %d entitlements", self.url,
                           type(exc).__name__, exc, len(self.revocations.tokens),
                           len(self.revocations.entitlements))


@contextlib.asynccontextmanager
async def polling(poller: RevocationPoller) -> AsyncIterator[None]:
    async with Periodic("revocation-feed", poller.poll_and_log, poller.interval).running():
        yield
