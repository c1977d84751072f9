"""What an unexpected failure tells the client, and the control-character guard.

A 500 cannot know whether the request caused it (a value the code mishandles is exactly what
fuzzing found), so its body must not claim the client is blameless."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.input_guard import ControlCharacterGuard, control_character_errors
from shared.problems import install_problem_handlers


def app_that_fails() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(ControlCharacterGuard)

    @app.get("/boom/{thing}")
    async def boom(thing: str) -> dict[str, str]:
        raise OverflowError(thing)

    return app


async def test_a_500_does_not_claim_nothing_sent_caused_it() -> None:
    transport = httpx.ASGITransport(app=app_that_fails(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/boom/x")
    assert resp.status_code == 500
    body = resp.json()
    assert body["type"].endswith("internal-error")
    assert "nothing you sent" not in body["detail"]
    assert "X-Request-ID" in body["detail"]


async def test_control_characters_in_path_or_query_are_a_422_naming_where() -> None:
    transport = httpx.ASGITransport(app=app_that_fails(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        in_path = await client.get("/boom/a%00b")
        in_query = await client.get("/boom/x", params={"q": "a\u001ab"})
    assert in_path.status_code == 422 and in_path.json()["errors"][0]["location"] == "path"
    assert in_query.status_code == 422 and in_query.json()["errors"][0] == {
        "location": "query", "field": "q", "type": "control_character",
        "message": "The value holds a control character; no parameter accepts one."}
    assert in_path.headers["content-type"] == "application/problem+json"


def test_ordinary_text_passes_the_guard() -> None:
    assert control_character_errors("/v1/products/prd_1a", b"q=caf%C3%A9+bar&x=%E2%80%94") == []
