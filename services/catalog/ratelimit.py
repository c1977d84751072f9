"""A per-client token bucket for the public (unauthenticated) catalogue.

Why: the DCAT-AP catalogue needs no token, so nothing else stops one address from harvesting it
in a tight loop. Each process keeps its own buckets (a client behind the balancer may get up to
one allowance per replica): a bound on abuse, not a quota; no shared state is needed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from shared.errors import ProblemError


class TooManyRequests(ProblemError):
    status = 429
    problem = "too-many-requests"
    title = "Too many requests"


class RateLimiter:
    """``per_minute`` requests per client, refilled continuously; bursts up to ``per_minute``."""

    def __init__(self, per_minute: int, *, max_clients: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, at)

    def check(self, client: str, now: float | None = None) -> None:
        """Take one request from ``client``'s allowance or raise 429 with Retry-After."""
        if self.per_minute <= 0:
            return  # disabled
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        tokens, at = self._buckets.pop(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / rate))
            raise TooManyRequests(
                f"At most {self.per_minute} requests a minute to the public catalogue per client; "
                f"retry in {wait} s (or honour ETag / If-None-Match: a 304 costs the same request, "
                "but nothing to download).",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[client] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)  # the least recently seen client
