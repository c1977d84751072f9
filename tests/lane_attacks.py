"""Token attacks against the route lanes (shared.route_lane): what the attack tests of each
lane share (tests/access/test_token_lane_attacks.py, tests/orders/test_order_lane_attacks.py,
tests/catalog/test_public_lane_attacks.py).

Why: a lane verifies the caller itself, before FastAPI routes the request, so the attacks
tests/test_token_attacks.py sends to ``/v1/me`` say nothing about it. Each lane route gets the
same attack tokens (that module's ATTACKS, signed for the lane route's own caller so that a token
differs from an accepted one in the attacked property alone) and the same malformed
``Authorization`` headers, once through the lane and once with the lane bypassed; the two
answers, and what each wrote, must be the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import FromClause, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Receive, Scope, Send

from shared.auth import Principal, TokenVerifier, _platform_principal
from shared.errors import Unauthorized
from shared.outbox import AUDIT_EVENT, outbox
from tests.test_token_attacks import ATTACKS, DATA_TOKEN_AS_PLATFORM_TOKEN, Signer, b64

Headers = list[tuple[str, str]]

#: Problem members that name the request, not the answer.
_PER_REQUEST = {"instance", "request_id", "trace_id"}


class LaneSigner(Signer):
    """``Signer`` (so ATTACKS can use it) for the lane route's caller: every token it signs
    carries ``identity`` (the subject, organisation and roles the route accepts) unless an
    attack overrides a claim."""

    def __init__(self, *, kid: str, private: Any, public_jwk: dict[str, Any], issuer: str,
                 audience: str, identity: dict[str, Any]) -> None:  # no super(): no RunningApp here
        self.service, self.typ = "lane", "JWT"
        self.kid, self.private, self.public_jwk = kid, private, public_jwk
        self.iss, self.aud = issuer, audience
        self.identity = identity

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return super().claims(**{**self.identity, **overrides})


def malformed_authorizations(good: str, forged: str) -> dict[str, tuple[Headers, bool]]:
    """Authorization headers around a token the route accepts (``good``) and one it refuses
    (``forged``): name -> (headers, whether the route accepts them). Read as HTTPBearer reads
    them, the first header counts, the scheme is case-insensitive and the credentials are
    stripped; nothing else is a bearer token."""
    auth = "Authorization"
    return {
        "missing": ([], False),
        "bearer_without_token": ([(auth, "Bearer")], False),
        "bearer_with_blank_token": ([(auth, "Bearer    ")], False),
        "token_without_scheme": ([(auth, good)], False),
        "basic": ([(auth, "Basic " + b64(b"buyer:secret"))], False),
        "other_scheme": ([(auth, f"Token {good}")], False),
        "tab_after_scheme": ([(auth, f"Bearer\t{good}")], False),
        "whitespace_inside_token": ([(auth, f"Bearer {good[:20]} {good[20:]}")], False),
        "two_tokens_in_one_header": ([(auth, f"Bearer {forged}, Bearer {good}")], False),
        "two_headers_forged_first": ([(auth, f"Bearer {forged}"), (auth, f"Bearer {good}")], False),
        "two_headers_good_first": ([(auth, f"Bearer {good}"), (auth, f"Bearer {forged}")], True),
        "two_headers_empty_first": ([(auth, ""), (auth, f"Bearer {good}")], False),
        "lowercase_scheme": ([(auth, f"bearer {good}")], True),
        "token_padded_with_spaces": ([(auth, f"Bearer   {good}  ")], True),
    }


@dataclass
class Answer:
    """One request's response, the rows it added, the audit events it recorded and how many
    times the app's verifier was asked."""

    resp: httpx.Response
    rows: dict[str, int]
    events: list[tuple[str, str]]  # (action, outcome) of the audit events it recorded
    verified: int

    def comparable(self) -> dict[str, Any]:
        """What must be the same through the lane and through the route."""
        body = self.resp.json()
        if self.resp.headers.get("content-type") == "application/problem+json":
            body = {k: v for k, v in body.items() if k not in _PER_REQUEST}
        else:
            body = sorted(body) if isinstance(body, dict) else body  # ids and times differ
        return {"status": self.resp.status_code, "content-type": self.resp.headers.get("content-type"),
                "www-authenticate": self.resp.headers.get("www-authenticate"), "body": body,
                "rows": self.rows, "events": self.events}


async def _pass_through(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
    await self.app(scope, receive, send)


@dataclass
class LaneTarget:
    """One lane route under attack: how to send it a request with the given Authorization
    headers (everything else as the lane takes it), where the route writes, and its lane."""

    send: Callable[[Headers], Awaitable[httpx.Response]]
    sessionmaker: async_sessionmaker[AsyncSession]
    tables: tuple[FromClause, ...]
    verifier: TokenVerifier
    lane: type
    monkeypatch: pytest.MonkeyPatch
    #: Run before each request, outside what it is said to write (e.g. a fresh quote to order).
    prepare: Callable[[], Awaitable[None]] | None = None

    async def _snapshot(self) -> tuple[dict[str, int], int]:
        async with self.sessionmaker() as s:
            rows = {str(t): (await s.execute(select(func.count()).select_from(t))).scalar_one()
                    for t in self.tables}
            last = (await s.execute(select(func.max(outbox.c.id)))).scalar_one()
        return rows, last or 0

    async def attempt(self, headers: Headers) -> Answer:
        """Send once, counting the verifier's calls and what the request wrote."""
        if self.prepare is not None:
            await self.prepare()
        rows, last = await self._snapshot()
        calls: list[str] = []
        real = self.verifier.verify

        async def counted(token: str) -> Any:
            calls.append(token)
            return await real(token)

        with self.monkeypatch.context() as m:
            m.setattr(self.verifier, "verify", counted)
            resp = await self.send(headers)
        after, _ = await self._snapshot()
        async with self.sessionmaker() as s:
            added = (await s.execute(select(outbox.c.kind, outbox.c.payload)
                                     .where(outbox.c.id > last).order_by(outbox.c.id))).all()
        # Background work (an order's fulfilment) records events meanwhile: an audit event is
        # this request's when it carries its request id; other messages are counted by kind.
        request_id = resp.headers.get("x-request-id")
        events = [(payload["action"], payload["outcome"]) for kind, payload in added
                  if kind == AUDIT_EVENT and payload.get("request_id") == request_id]
        added_rows = {k: after[k] - rows[k] for k in rows if after[k] != rows[k]}
        for kind, _ in added:
            if kind != AUDIT_EVENT:
                added_rows[f"outbox {kind}"] = added_rows.get(f"outbox {kind}", 0) + 1
        return Answer(resp, added_rows, events, len(calls))

    async def lane_and_route(self, headers: Headers) -> tuple[Answer, Answer]:
        """The same request through the lane, then with the lane passing everything on."""
        lane = await self.attempt(headers)
        with self.monkeypatch.context() as m:
            m.setattr(self.lane, "__call__", _pass_through)
            route = await self.attempt(headers)
        return lane, route


def assert_refused_alike(lane: Answer, route: Answer, case: str) -> None:
    """A 401 problem with the route's WWW-Authenticate, the route's body, and nothing written."""
    assert lane.resp.status_code == 401, (case, lane.resp.text)
    assert lane.resp.headers["content-type"] == "application/problem+json", case
    assert lane.resp.headers["www-authenticate"].startswith("Bearer"), case
    assert lane.comparable() == route.comparable(), case
    assert lane.rows == {} and lane.events == [], case


def bearer(token: str) -> Headers:
    return [("Authorization", f"Bearer {token}")]


async def assert_every_attack_refused_alike(target: LaneTarget, signer: LaneSigner) -> None:
    """Each ATTACKS token, and each platform token with one data-access token's property,
    through the lane and through the route: the lane verified it, declined it, and the route
    refused it as it refuses it without the lane."""
    tokens = {name: make(signer) for name, make in ATTACKS.items()}
    tokens |= {f"data_token_{name}": make(signer)
               for name, (make, _) in DATA_TOKEN_AS_PLATFORM_TOKEN.items()}
    for name, token in sorted(tokens.items()):
        lane, route = await target.lane_and_route(bearer(token))
        assert (lane.verified, route.verified) == (2, 1), name  # the lane asked, then the route
        assert_refused_alike(lane, route, name)


async def assert_malformed_headers_answered_alike(target: LaneTarget, signer: LaneSigner,
                                                  accepted: int) -> None:
    """Each malformed Authorization header: the route's 401, or (where the route reads a good
    token out of it) the route's ``accepted`` answer, taken by the lane."""
    good, forged = signer.sign(signer.claims()), ATTACKS["signed_by_another_key"](signer)
    for name, (headers, takes) in malformed_authorizations(good, forged).items():
        lane, route = await target.lane_and_route(headers)
        if takes:
            assert lane.resp.status_code == accepted, (name, lane.resp.text)
            assert lane.comparable() == route.comparable(), name
            assert (lane.verified, route.verified) == (1, 1), name  # answered by the lane
        else:
            assert_refused_alike(lane, route, name)


async def assert_replaced_authentication_obeyed(target: LaneTarget, app: FastAPI,
                                                signer: LaneSigner) -> None:
    """An operator (or a test) that replaces how the routes authenticate (here: every token is
    refused) replaces it for the lane too (LaneRoute.overridden): the lane, which verifies by
    itself, must leave the request to the route, which refuses the control token."""

    async def nobody() -> Principal:
        raise Unauthorized("Authentication is switched off.",
                           headers={"WWW-Authenticate": 'Bearer realm="sluice"'})

    if target.prepare is not None:  # before the replacement, which would refuse it too
        await target.prepare()
        target.prepare = None
    app.dependency_overrides[_platform_principal] = nobody
    try:
        lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims())))
    finally:
        del app.dependency_overrides[_platform_principal]
    assert lane.verified == 0  # nobody verified the token: the replacement answered
    assert_refused_alike(lane, route, "authentication replaced")
