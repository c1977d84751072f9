"""A short-lived, per-process cache of the public JSON of published products.

Published versions never change, so the public view of a product only changes
when its lifecycle does (suspension, a new version, retirement). Serving the
same bytes for a couple of seconds keeps ``GET /v1/products/{id}`` close to the
cost of token verification alone. Transitions made by this process invalidate
at once; other replicas see them within ``ttl`` seconds. Owners and regulators
never read from the cache (they must see their own writes and the drafts).
"""

from __future__ import annotations

import time
from collections import OrderedDict


class PublicViewCache:
    def __init__(self, ttl: float, max_entries: int = 20_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, product_id: str) -> tuple[str, bytes] | None:
        """(provider org, body) if fresh."""
        entry = self._entries.get(product_id)
        if entry is None:
            return None
        expires, org, body = entry
        if expires < time.monotonic():
            self._entries.pop(product_id, None)
            return None
        return org, body

    def put(self, product_id: str, provider_org: str, body: bytes) -> None:
        if not self.enabled:
            return
        self._entries[product_id] = (time.monotonic() + self.ttl, provider_org, body)
        self._entries.move_to_end(product_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, product_id: str) -> None:
        self._entries.pop(product_id, None)


class TtlCache:
    """A small per-process TTL cache (LRU-bounded) for values that may lag a little."""

    def __init__(self, ttl: float, max_entries: int = 5_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[object, tuple[float, object]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, key: object) -> object | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: object, value: object) -> None:
        if not self.enabled:
            return
        self._entries[key] = (time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
