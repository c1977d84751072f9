"""A message a receiver refuses for good is dead-lettered: kept, not sent again, counted on
/metrics, listed for operators, and sent again on request; the rest of its batch goes on."""

from __future__ import annotations

import httpx

from shared.command_relay import command_delivery
from shared.outbox import OutboxRelay, enqueue_command
from tests.conftest import AppFactory
from tests.support import TestKeys

ANSWERS = {"/ok-1": 200, "/bad": 400, "/ok-2": 201}


async def test_a_command_refused_for_good_is_dead_lettered_and_can_be_sent_again(
        service_app: AppFactory, test_keys: TestKeys) -> None:
    sent: list[str] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(ANSWERS[request.url.path], json={})

    async def token() -> str:
        return "svc-token"

    operator = {"Authorization": "Bearer " + test_keys.token(roles=["operator"], org="org_platform")}
    buyer = {"Authorization": "Bearer " + test_keys.token(roles=["buyer"])}
    async with service_app("catalog") as svc, httpx.AsyncClient(
            transport=httpx.MockTransport(receiver)) as http:
        db = svc.db
        async with db.sessionmaker() as s, s.begin():
            for i, path in enumerate(ANSWERS):
                await enqueue_command(s, destination="receiver", message_id=f"cmd-{i}", method="POST", path=path)
        deliver = command_delivery("receiver", "access_url").deliverer(http, "http://receiver", token)
        relay = OutboxRelay(db.sessionmaker, "receiver", deliver)
        assert await relay.run_once() == 1  # /ok-1 delivered, /bad dead-lettered
        assert await relay.run_once() == 1  # /ok-2 goes on
        assert await relay.run_once() == 0
        assert sent == ["/ok-1", "/bad", "/ok-2"]

        listed = await svc.client.get("/v1/outbox/dead-letters", headers=operator)
        assert listed.status_code == 200, listed.text
        [letter] = listed.json()["items"]
        assert letter["message_id"] == "cmd-1" and "400" in letter["last_error"]
        metrics = (await svc.client.get("/metrics")).text
        assert 'sluice_outbox_dead_letters{destination="receiver",service="catalog"} 1.0' in metrics
        assert (await svc.client.get("/v1/outbox/dead-letters", headers=buyer)).status_code == 403

        ANSWERS["/bad"] = 200  # the receiver is fixed
        try:
            again = await svc.client.post(f"/v1/outbox/dead-letters/{letter['id']}/retry", headers=operator)
            assert again.status_code == 200, again.text
            assert await relay.run_once() == 1
        finally:
            ANSWERS["/bad"] = 400
        assert sent[-1] == "/bad"
        assert (await svc.client.get("/v1/outbox/dead-letters", headers=operator)).json()["items"] == []
        missing = await svc.client.post(f"/v1/outbox/dead-letters/{letter['id']}/retry", headers=operator)
        assert missing.status_code == 404
