"""In-process stand-ins for the catalog internal API and the access entitlements endpoint,
implementing exactly the shapes of docs/contracts.md."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
from typing import Any

import httpx
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse

SERVICE_TOKEN = "svc-orders-test-token"

PLANS: dict[str, dict[str, Any]] = {
    "plan_free": {"id": "plan_free", "name": "Free", "kind": "free", "currency": "EUR", "price": 0,
                  "period": None, "price_per_query": 0, "included_queries": 0, "tiers": [],
                  "query_quota": 100, "access_days": 30},
    "plan_monthly": {"id": "plan_monthly", "name": "Monthly", "kind": "subscription", "currency": "EUR",
                     "price": 4900, "period": "month", "price_per_query": 0, "included_queries": 0,
                     "tiers": [], "query_quota": 10000, "access_days": None, "trial_days": 14,
                     "trial_queries": 100},
    "plan_premium": {"id": "plan_premium", "name": "Premium", "kind": "subscription", "currency": "EUR",
                     "price": 9900, "period": "month", "price_per_query": 0, "included_queries": 0,
                     "tiers": [], "query_quota": 50000, "access_days": None},
    "plan_once_jpy": {"id": "plan_once_jpy", "name": "One-off (JPY)", "kind": "one_time", "currency": "JPY",
                      "price": 5000, "period": None, "price_per_query": 0, "included_queries": 0,
                      "tiers": [], "query_quota": None, "access_days": 90},
    "plan_metered": {"id": "plan_metered", "name": "Metered", "kind": "metered", "currency": "EUR",
                     "price": 1000, "period": "month", "price_per_query": 0, "included_queries": 1000,
                     "tiers": [{"up_to": 1000, "unit_price": 5}, {"up_to": None, "unit_price": 3}],
                     "query_quota": None, "access_days": None},
}


def product_version(product_id: str = "prd_mobility", version: int = 1, *, provider_org: str = "org_provider",
                    purposes: list[str] | None = None, status: str = "listed") -> dict[str, Any]:
    return {
        "product_id": product_id, "version": version, "status": status, "provider_org": provider_org,
        "slug": "mobility-2024", "title": "Mobility 2024", "grade": "L3_sensitive",
        "personal_data": "deidentified",
        "delivery": {"data_service_url": "http://127.0.0.1:8010", "mode": "aggregates"},
        "usage_policy": {"allowed_purposes": purposes if purposes is not None else ["research", "statistics"],
                         "max_duration_days": 365, "resale_allowed": False, "territories": ["EU"]},
        "guardrails": {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0},
        "plans": copy.deepcopy(list(PLANS.values())),
    }


def _check_service(authorization: str | None) -> None:
    if authorization != f"Bearer {SERVICE_TOKEN}":
        raise HTTPException(401, "service token required")


class FakeCatalog:
    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}
        self.calls = 0
        #: (product, version) → status the catalog answers instead (e.g. 422 for a bad reference).
        self.refuse: dict[tuple[str, int], int] = {}
        self.app = FastAPI()

        @self.app.get("/internal/v1/products/{product_id}/versions/{version}")
        async def get_version(product_id: str, version: int,
                              authorization: str | None = Header(default=None)) -> dict[str, Any]:
            _check_service(authorization)
            self.calls += 1
            if (product_id, version) in self.refuse:
                raise HTTPException(self.refuse[(product_id, version)], "refused")
            found = self.versions.get((product_id, version))
            if found is None:
                raise HTTPException(404, "no such version")
            latest = max(v for (p, v) in self.versions if p == product_id)
            return {**found, "latest_version": latest}

        @self.app.get("/internal/v1/products/{product_id}")
        async def get_product(product_id: str, authorization: str | None = Header(default=None)) -> dict[str, Any]:
            _check_service(authorization)
            mine = [v for (p, _), v in self.versions.items() if p == product_id]
            if not mine:
                raise HTTPException(404, "no such product")
            latest = max(mine, key=lambda v: v["version"])
            return {"product_id": product_id, "status": latest["status"],
                    "provider_org": latest["provider_org"], "latest_version": latest["version"]}

    def add(self, version: dict[str, Any]) -> dict[str, Any]:
        self.versions[(version["product_id"], version["version"])] = version
        return version


class FakeAudit(httpx.MockTransport):
    """The audit service's append endpoint: takes the orders service's events (its audit relay
    runs in these tests too) and keeps them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        super().__init__(self._append)

    def _append(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {SERVICE_TOKEN}":
            return httpx.Response(401)
        self.events.extend(json.loads(request.content)["events"])
        return httpx.Response(201, json={})


class FakeAccess:
    def __init__(self) -> None:
        self.entitlements: dict[str, dict[str, Any]] = {}
        self.grant_attempts: list[str] = []  # order id of every grant request, refused or not
        self.grant_requests: list[dict[str, Any]] = []  # the grant requests it answered 200/201
        self.grant_batches: list[list[str]] = []  # the order ids of each batch request
        #: order id -> the status its grant is refused with (a problem), alone or in a batch
        self.refuse: dict[str, int] = {}
        self.revocations: list[str] = []
        self.fail_with: int | None = None
        #: While set and not yet released, grants wait for it (a grant "in flight").
        self.hold_grants: asyncio.Event | None = None
        self.changes: list[dict[str, Any]] = []
        self.applied: dict[str, dict[str, Any]] = {}
        #: entitlement id -> the sequence numbers of its recorded queries
        self.usage: dict[str, list[int]] = {}
        self._seq = 0
        self.organisations: dict[str, list[str]] = {
            "org_buyer_a": ["buyer"], "org_buyer_b": ["buyer"], "org_provider": ["provider"],
            "org_other": ["provider"]}
        self.app = FastAPI()

        @self.app.post("/v1/entitlements")
        async def grant(request: Request, authorization: str | None = Header(default=None)) -> JSONResponse:
            _check_service(authorization)
            body = await request.json()
            self.grant_attempts.append(str(body["order_id"]))
            if self.fail_with:
                return JSONResponse({"detail": "down"}, status_code=self.fail_with)
            if (refused := self._refused(body)) is not None:
                return JSONResponse(refused[1], status_code=refused[0])
            self.grant_requests.append(body)
            if self.hold_grants is not None:
                await self.hold_grants.wait()
            status, answer = self._grant(body)
            return JSONResponse(answer, status_code=status)

        @self.app.post("/v1/entitlements/batch")
        async def grant_batch(request: Request, authorization: str | None = Header(default=None)) -> JSONResponse:
            """Access's batch: each item answered as the single grant would answer it."""
            _check_service(authorization)
            items = (await request.json())["items"]
            if len(items) > 100:
                return JSONResponse({"detail": "at most 100 items"}, status_code=422)
            self.grant_batches.append([str(i["body"]["order_id"]) for i in items])
            self.grant_attempts.extend(str(i["body"]["order_id"]) for i in items)
            if self.fail_with:
                return JSONResponse({"detail": "down"}, status_code=self.fail_with)
            refused = [self._refused(i["body"]) for i in items]
            self.grant_requests.extend(i["body"] for i, r in zip(items, refused, strict=True) if r is None)
            if self.hold_grants is not None:
                await self.hold_grants.wait()
            results = []
            for item, refusal in zip(items, refused, strict=True):
                status, answer = refusal or self._grant(item["body"])
                results.append({"idempotency_key": item["idempotency_key"], "status": status,
                                "body": answer})
            return JSONResponse({"results": results})

        @self.app.post("/v1/entitlements/by-order/{order_id}/changes")
        async def change(order_id: str, request: Request,
                         authorization: str | None = Header(default=None)) -> JSONResponse:
            _check_service(authorization)
            if self.fail_with:
                return JSONResponse({"detail": "down"}, status_code=self.fail_with)
            body = await request.json()
            ent = self.entitlements.get(order_id)
            if ent is None:
                return JSONResponse({"detail": "no entitlement"}, status_code=404)
            if ent["status"] == "revoked":
                return JSONResponse({"detail": "revoked"}, status_code=409)
            if body["change_id"] in self.applied:
                return JSONResponse(ent, status_code=200)
            self.applied[body["change_id"]] = body
            self.changes.append({**body, "order_id": order_id})
            for key in ("valid_from", "valid_until", "plan_id", "spend_cap"):
                if body.get(key) is not None:
                    ent[key] = body[key]
            if body.get("query_allowance") is not None:
                ent["query_quota"] = self.used(ent["id"]) + int(body["query_allowance"])
            elif body.get("unlimited_queries"):
                ent["query_quota"] = None
            if body.get("billing_hold") is not None:
                ent["billing_hold"] = body["billing_hold"]
            return JSONResponse(ent, status_code=201)

        @self.app.get("/v1/usage/summary")
        async def usage_summary(entitlement_id: str, after_seq: int = 0,
                                authorization: str | None = Header(default=None)) -> JSONResponse:
            _check_service(authorization)
            seqs = [n for n in self.usage.get(entitlement_id, []) if n > after_seq]
            return JSONResponse({"entitlement_id": entitlement_id, "after_seq": after_seq,
                                 "queries": len(seqs), "last_seq": max(seqs, default=after_seq),
                                 "epsilon": 0.0})

        @self.app.get("/v1/organisations/{org_id}")
        async def organisation(org_id: str, authorization: str | None = Header(default=None)) -> JSONResponse:
            _check_service(authorization)
            roles = self.organisations.get(org_id)
            if roles is None:
                return JSONResponse({"detail": "no such organisation"}, status_code=404)
            return JSONResponse({"id": org_id, "name": org_id, "roles": roles, "status": "active"})

        @self.app.post("/v1/entitlements/by-order/{order_id}/revoke")
        async def revoke(order_id: str, request: Request,
                         authorization: str | None = Header(default=None)) -> JSONResponse:
            _check_service(authorization)
            if self.fail_with:
                return JSONResponse({"detail": "down"}, status_code=self.fail_with)
            ent = self.entitlements.get(order_id)
            if ent is None:
                return JSONResponse({"detail": "no entitlement"}, status_code=404)
            self.revocations.append(order_id)
            ent["status"] = "revoked"
            ent["revoked_reason"] = (await request.json()).get("reason")
            return JSONResponse(ent, status_code=200)

    def _refused(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        status = self.refuse.get(str(body["order_id"]))
        return None if status is None else (status, {"type": "https://sluice.dev/problems/refused",
                                                     "status": status})

    def _grant(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        existing = self.entitlements.get(body["order_id"])
        if existing is not None:
            return 200, existing
        ent = {"id": "ent_" + secrets.token_hex(6), "status": "active", **body}
        self.entitlements[body["order_id"]] = ent
        return 201, ent

    def used(self, entitlement_id: str) -> int:
        return len(self.usage.get(entitlement_id, []))

    def record_queries(self, order_id: str, count: int) -> None:
        """Queries a data service reported on the entitlement of ``order_id``."""
        ent_id = self.entitlements[order_id]["id"]
        for _ in range(count):
            self._seq += 1
            self.usage.setdefault(ent_id, []).append(self._seq)

