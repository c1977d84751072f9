"""One delivery policy for every outbox deliverer, and the service token as httpx auth."""

from __future__ import annotations

import httpx
import pytest

from shared.outbox import DeliveryRefused, check_delivered
from shared.service_auth import ServiceTokenAuth


class Tokens:
    def __init__(self) -> None:
        self.issued = 0

    async def __call__(self) -> str:
        return f"token-{self.issued}"

    def invalidate(self) -> None:
        self.issued += 1


async def test_a_401_gets_one_fresh_token_and_one_retry() -> None:
    seen: list[str] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(401 if len(seen) == 1 else 200)

    tokens = Tokens()
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        resp = await http.post("http://access/v1/usage", json={"a": 1}, auth=ServiceTokenAuth(tokens))
    assert resp.status_code == 200
    assert seen == ["Bearer token-0", "Bearer token-1"]


async def test_a_second_401_is_returned_not_looped() -> None:
    calls: list[int] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        resp = await http.get("http://access/v1/revocations", auth=ServiceTokenAuth(Tokens()))
    assert resp.status_code == 401 and len(calls) == 2


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered"), (201, "delivered"), (204, "delivered"), (409, "delivered"),
    (401, "retried"), (408, "retried"), (429, "retried"), (500, "retried"), (503, "retried"),
    (400, "refused for good"), (403, "refused for good"), (404, "refused for good"), (422, "refused for good"),
])
def test_which_answers_count_as_delivered(status: int, outcome: str) -> None:
    resp = httpx.Response(status, request=httpx.Request("POST", "http://x"))
    try:
        check_delivered(resp, "x")
        found = "delivered"
    except DeliveryRefused as exc:
        found = "refused for good" if exc.permanent else "retried"
    assert found == outcome
