"""The shared outgoing HTTP client: passes on the request id, retries connects."""

from __future__ import annotations

import httpx

from shared.logging import request_id_var


async def _add_request_id(request: httpx.Request) -> None:
    rid = request_id_var.get()
    if rid and "x-request-id" not in request.headers:
        request.headers["X-Request-ID"] = rid


def create_http_client(timeout: float = 10.0, **kwargs: object) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that forwards ``X-Request-ID`` and retries
    failed connection attempts (never a request that may have been received)."""
    transport = httpx.AsyncHTTPTransport(retries=2)
    return httpx.AsyncClient(
        timeout=timeout,
        transport=transport,
        event_hooks={"request": [_add_request_id]},
        **kwargs,  # type: ignore[arg-type]
    )
