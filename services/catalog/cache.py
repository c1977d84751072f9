"""A short-lived, per-process cache of the public JSON of published products.

Published versions never change, so the public view of a product only changes
when its lifecycle does (suspension, a new version, retirement). Serving the
same bytes for a couple of seconds keeps ``GET /v1/products/{id}`` close to the
cost of token verification alone. Transitions made by this process invalidate
at once; other replicas see them within ``ttl`` seconds. Owners and regulators
never read from the cache (they must see their own writes and the drafts).

A read that loaded the view before a transition committed must not store it after the
transition's invalidation: that would serve the old view for the whole TTL. So a filler
takes a :meth:`PublicViewCache.ticket` before it reads, and :meth:`PublicViewCache.put`
drops the fill when the product was invalidated after that ticket (a generation counter).
"""

from __future__ import annotations

import time
from collections import OrderedDict


class PublicViewCache:
    def __init__(self, ttl: float, max_entries: int = 20_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        #: Bumped by every invalidation; a ticket is its value when a read started.
        self._generation = 0
        #: Product → generation of its latest invalidation (the newest ``max_entries``).
        self._invalidated: OrderedDict[str, int] = OrderedDict()
        #: The newest generation dropped from ``_invalidated``: a fill older than it might
        #: predate a forgotten invalidation, so it is not stored.
        self._forgotten = 0

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

    def ticket(self) -> int:
        """Take before reading the view that will be :meth:`put`."""
        return self._generation

    def put(self, product_id: str, provider_org: str, body: bytes, *, ticket: int) -> None:
        """Store the view read under ``ticket``, unless the product was invalidated since."""
        if not self.enabled or self._invalidated.get(product_id, self._forgotten) > ticket:
            return
        self._entries[product_id] = (time.monotonic() + self.ttl, provider_org, body)
        self._entries.move_to_end(product_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, product_id: str) -> None:
        self._generation += 1
        self._entries.pop(product_id, None)
        self._invalidated[product_id] = self._generation
        self._invalidated.move_to_end(product_id)
        while len(self._invalidated) > self.max_entries:
            self._forgotten = self._invalidated.popitem(last=False)[1]


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
