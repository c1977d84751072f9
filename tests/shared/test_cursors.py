"""Every list reads its cursor through shared.pagination.read_cursor: a cursor this service
did not give is one and the same 400 problem everywhere, never a 500 or a silent first page."""

from __future__ import annotations

import pytest

from shared.errors import BadRequest
from shared.pagination import encode_cursor, exact_int, read_cursor
from tests.conftest import AppFactory
from tests.support import TestKeys


def test_a_readable_cursor_gives_its_position_and_no_cursor_gives_none() -> None:
    assert read_cursor(encode_cursor({"seq": 7}), lambda p: exact_int(p["seq"])) == 7
    assert read_cursor(None, lambda p: exact_int(p["seq"])) is None
    assert read_cursor("", lambda p: exact_int(p["seq"])) is None


@pytest.mark.parametrize("cursor", [
    encode_cursor({"other": 7}),  # a missing key
    encode_cursor({"seq": "7"}),  # text where an int was written
    encode_cursor({"seq": True}),
    encode_cursor({"seq": 7.5}),
    encode_cursor([7]),  # not an object
    "%%%",  # not base64 JSON
])
def test_an_unreadable_cursor_is_the_invalid_cursor_problem(cursor: str) -> None:
    with pytest.raises(BadRequest) as caught:
        read_cursor(cursor, lambda p: exact_int(p["seq"]), "told what to do")
    body = caught.value.to_body()
    assert body["type"].endswith("/invalid-cursor") and body["title"] == "Invalid cursor"
    assert body["status"] == 400


async def test_a_forged_dead_letter_cursor_is_a_400_not_a_500(
        service_app: AppFactory, test_keys: TestKeys) -> None:
    operator = {"Authorization": "Bearer " + test_keys.token(roles=["operator"], org="org_platform")}
    async with service_app("catalog") as svc:
        resp = await svc.client.get("/v1/outbox/dead-letters", headers=operator,
                                    params={"cursor": encode_cursor({"id": "not a number"})})
    assert resp.status_code == 400, resp.text
    assert resp.json()["type"].endswith("/invalid-cursor")
