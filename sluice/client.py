"""A small typed client for the Sluice APIs (buyers, providers, regulators, operators).

Synchronous ``httpx`` underneath; one :class:`SluiceClient` per API client
(client credentials). Every call can print itself (``trace=``), which is how
the demo doubles as API documentation.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = dict[str, Any]


@dataclass(frozen=True)
class Endpoints:
    access: str = "http://127.0.0.1:8003"
    catalog: str = "http://127.0.0.1:8001"
    orders: str = "http://127.0.0.1:8002"
    audit: str = "http://127.0.0.1:8004"

    @classmethod
    def from_env(cls) -> Endpoints:
        """``SLUICE_ACCESS_URL`` etc., defaulting to the local ports of `make run`."""
        d = cls()
        return cls(
            access=os.environ.get("SLUICE_ACCESS_URL", d.access).rstrip("/"),
            catalog=os.environ.get("SLUICE_CATALOG_URL", d.catalog).rstrip("/"),
            orders=os.environ.get("SLUICE_ORDERS_URL", d.orders).rstrip("/"),
            audit=os.environ.get("SLUICE_AUDIT_URL", d.audit).rstrip("/"),
        )


class ApiError(Exception):
    """A non-2xx answer; ``problem`` is the RFC 9457 (or RFC 6749) body."""

    def __init__(self, method: str, url: str, status: int, problem: JSON) -> None:
        self.method, self.url, self.status, self.problem = method, url, status, problem
        detail = problem.get("detail") or problem.get("error_description") or problem.get("error")
        super().__init__(f"{method} {url} → {status}: {detail or problem}")


Tracer = Callable[[str, str, JSON | None, httpx.Response], None]


@dataclass
class SluiceClient:
    client_id: str | None = None
    client_secret: str | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    token: str | None = None
    timeout: float = 30.0
    trace: Tracer | None = None
    _http: httpx.Client = field(init=False, repr=False)
    _expires: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=self.timeout)
        if self.token:
            self._expires = float("inf")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SluiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------
    def bearer(self) -> str:
        """A platform token, fetched with client credentials and reused until near expiry."""
        if self.token and time.monotonic() < self._expires:
            return self.token
        if not (self.client_id and self.client_secret):
            raise ApiError("POST", "/oauth/token", 401, {"detail": "no token and no client credentials"})
        url = f"{self.endpoints.access}/oauth/token"
        resp = self._http.post(url, data={"grant_type": "client_credentials"},
                               auth=(self.client_id, self.client_secret))
        if self.trace:
            self.trace("POST", url, {"grant_type": "client_credentials"}, resp)
        if resp.status_code != 200:
            raise ApiError("POST", url, resp.status_code, _body(resp))
        body = resp.json()
        self.token = str(body["access_token"])
        self._expires = time.monotonic() + float(body.get("expires_in", 300)) - 30
        return self.token

    def request(self, method: str, url: str, *, json: JSON | None = None,
                params: JSON | None = None, headers: dict[str, str] | None = None,
                token: str | None = None, auth: bool = True) -> Any:
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = f"Bearer {token or self.bearer()}"
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        resp = self._http.request(method, url, json=json, params=clean, headers=hdrs)
        if self.trace:
            self.trace(method, str(resp.request.url), json, resp)
        if resp.status_code >= 300:
            raise ApiError(method, url, resp.status_code, _body(resp))
        if resp.headers.get("content-type", "").startswith("application/x-ndjson"):
            return resp.text
        return resp.json() if resp.content else None

    def pages(self, url: str, params: JSON | None = None) -> Iterator[JSON]:
        """Every item of a cursor-paginated list."""
        params = dict(params or {})
        while True:
            page = self.request("GET", url, params=params)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # --- identity (operator) ---------------------------------------------------
    def me(self) -> JSON:
        return self.request("GET", f"{self.endpoints.access}/v1/me")  # type: ignore[no-any-return]

    def create_organisation(self, name: str, roles: list[str]) -> JSON:
        return self.request("POST", f"{self.endpoints.access}/v1/organisations",  # type: ignore[no-any-return]
                            json={"name": name, "roles": roles})

    def create_api_client(self, org_id: str, name: str, roles: list[str] | None = None) -> JSON:
        body: JSON = {"name": name}
        if roles:
            body["roles"] = roles
        return self.request("POST", f"{self.endpoints.access}/v1/organisations/{org_id}/clients",  # type: ignore[no-any-return]
                            json=body)

    # --- catalog -------------------------------------------------------------------
    def create_product(self, spec: JSON) -> JSON:
        return self.request("POST", f"{self.endpoints.catalog}/v1/products", json=spec)  # type: ignore[no-any-return]

    def submit_product(self, product_id: str) -> JSON:
        return self.request("POST", f"{self.endpoints.catalog}/v1/products/{product_id}/submit")  # type: ignore[no-any-return]

    def review_queue(self) -> JSON:
        return self.request("GET", f"{self.endpoints.catalog}/v1/review-queue")  # type: ignore[no-any-return]

    def approve_product(self, product_id: str, note: str) -> JSON:
        return self.request("POST", f"{self.endpoints.catalog}/v1/products/{product_id}/approve",  # type: ignore[no-any-return]
                            json={"note": note})

    def get_product(self, product_id: str) -> JSON:
        return self.request("GET", f"{self.endpoints.catalog}/v1/products/{product_id}")  # type: ignore[no-any-return]

    def search_products(self, q: str | None = None, **filters: Any) -> JSON:
        return self.request("GET", f"{self.endpoints.catalog}/v1/products",  # type: ignore[no-any-return]
                            params={"q": q, **filters})

    # --- orders -----------------------------------------------------------------------
    def quote(self, product_id: str, version: int, plan_id: str, *, periods: int = 1,
              quantity: int = 0) -> JSON:
        return self.request("POST", f"{self.endpoints.orders}/v1/quotes", json={  # type: ignore[no-any-return]
            "product_id": product_id, "version": version, "plan_id": plan_id,
            "periods": periods, "quantity": quantity})

    def create_order(self, quote_id: str, purpose: str, idempotency_key: str | None = None) -> JSON:
        return self.request("POST", f"{self.endpoints.orders}/v1/orders",  # type: ignore[no-any-return]
                            json={"quote_id": quote_id, "purpose": purpose},
                            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def pay_order(self, order_id: str, payment_method: str = "pm_card_visa") -> JSON:
        return self.request("POST", f"{self.endpoints.orders}/v1/orders/{order_id}/pay",  # type: ignore[no-any-return]
                            json={"payment_method": payment_method})

    def get_order(self, order_id: str) -> JSON:
        return self.request("GET", f"{self.endpoints.orders}/v1/orders/{order_id}")  # type: ignore[no-any-return]

    def list_orders(self, **filters: Any) -> list[JSON]:
        return list(self.pages(f"{self.endpoints.orders}/v1/orders", filters))

    def refund_order(self, order_id: str, reason: str) -> JSON:
        return self.request("POST", f"{self.endpoints.orders}/v1/orders/{order_id}/refund",  # type: ignore[no-any-return]
                            json={"reason": reason})

    def wait_for_order(self, order_id: str, status: str, timeout: float = 30.0,
                       on_wait: Callable[[JSON], None] | None = None) -> JSON:
        """Poll until the order reaches ``status`` (payments and fulfilment are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            order = self.get_order(order_id)
            if order["status"] == status:
                return order
            if time.monotonic() > deadline:
                raise TimeoutError(f"order {order_id} is {order['status']}, not {status}, after {timeout}s")
            if on_wait:
                on_wait(order)
            time.sleep(0.3)

    # --- access: entitlements and data-access tokens ----------------------------------
    def list_entitlements(self, **filters: Any) -> list[JSON]:
        return list(self.pages(f"{self.endpoints.access}/v1/entitlements", filters))

    def issue_data_token(self, entitlement_id: str) -> JSON:
        return self.request("POST", f"{self.endpoints.access}/v1/entitlements/{entitlement_id}/tokens")  # type: ignore[no-any-return]

    # --- dataservice (data-access token, not the platform token) ---------------------
    def data_schema(self, data_service_url: str, data_token: str) -> JSON:
        return self.request("GET", f"{data_service_url.rstrip('/')}/v1/schema", token=data_token)  # type: ignore[no-any-return]

    def query(self, data_service_url: str, data_token: str, query: JSON) -> JSON:
        return self.request("POST", f"{data_service_url.rstrip('/')}/v1/query",  # type: ignore[no-any-return]
                            json=query, token=data_token)

    # --- audit ----------------------------------------------------------------------------
    def audit_events(self, **filters: Any) -> JSON:
        return self.request("GET", f"{self.endpoints.audit}/v1/events", params=filters)  # type: ignore[no-any-return]

    def audit_event(self, seq: int) -> JSON:
        return self.request("GET", f"{self.endpoints.audit}/v1/events/{seq}")  # type: ignore[no-any-return]

    def checkpoint(self) -> Any:
        return self.request("GET", f"{self.endpoints.audit}/v1/checkpoint", auth=False)


def _body(resp: httpx.Response) -> JSON:
    try:
        body = resp.json()
        return body if isinstance(body, dict) else {"detail": body}
    except ValueError:
        return {"detail": resp.text[:500]}
