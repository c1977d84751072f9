"""The HTTP plumbing under the SDK: service URLs, credentials, errors, paging.

Synchronous ``httpx``; one :class:`Transport` per API client (OAuth 2.0 client
credentials, or a ready platform token). Every call can print itself
(``trace=``), which is how the demo doubles as API documentation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from sluice.token_cache import TokenCache

JSON = dict[str, Any]

#: Environment variables the SDK and the CLI read, with what they mean (shown in
#: ``sluice --help`` and the README).
ENVIRONMENT: dict[str, str] = {
    "SLUICE_CLIENT_ID": "your API client's id (from the operator)",
    "SLUICE_CLIENT_SECRET": "your API client's secret (shown once when the client was created)",
    "SLUICE_TOKEN": "a ready platform token, instead of client credentials",
    "SLUICE_ACCESS_URL": "the access service (default http://127.0.0.1:8003)",
    "SLUICE_CATALOG_URL": "the catalog service (default http://127.0.0.1:8001)",
    "SLUICE_ORDERS_URL": "the orders service (default http://127.0.0.1:8002)",
    "SLUICE_AUDIT_URL": "the audit service (default http://127.0.0.1:8004)",
    "SLUICE_DATASERVICE_URL": "a data service, when a data-access token does not name one "
                              "(default http://127.0.0.1:8010)",
    "SLUICE_DATA_TOKEN": "a data-access token for `sluice query run|schema`",
    "SLUICE_AUDIT_PUBLIC_KEY": "the audit log's verifier key you pinned (`sluice audit verify`)",
    "SLUICE_TOKEN_CACHE": "0 to not keep platform tokens between runs (default: kept, 0600, "
                          "under ~/.cache/sluice, until a minute before they expire)",
}


@dataclass(frozen=True)
class Endpoints:
    """Where each service is; the defaults are the local ports of `make run`."""

    access: str = "http://127.0.0.1:8003"
    catalog: str = "http://127.0.0.1:8001"
    orders: str = "http://127.0.0.1:8002"
    audit: str = "http://127.0.0.1:8004"
    dataservice: str = "http://127.0.0.1:8010"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Endpoints:
        """``SLUICE_ACCESS_URL`` etc., defaulting to the local ports of `make run`."""
        env = os.environ if env is None else env
        d = cls()
        return cls(**{name: env.get(f"SLUICE_{name.upper()}_URL", getattr(d, name)).rstrip("/")
                      for name in ("access", "catalog", "orders", "audit", "dataservice")})

    def base(self, service: str) -> str:
        return str(getattr(self, service))


class ApiError(Exception):
    """A non-2xx answer; ``problem`` is the RFC 9457 (or RFC 6749) body."""

    def __init__(self, method: str, url: str, status: int, problem: JSON) -> None:
        self.method, self.url, self.status, self.problem = method, url, status, problem
        detail = problem.get("detail") or problem.get("error_description") or problem.get("error")
        super().__init__(f"{method} {url} → {status}: {detail or problem}")

    @property
    def type_slug(self) -> str:
        """The problem type's last segment (``quota-exhausted``), or the OAuth ``error``."""
        kind = str(self.problem.get("type") or self.problem.get("error") or "")
        return kind.rsplit("/", 1)[-1]


class CredentialsMissing(Exception):
    """No token and no client credentials: the caller has not said who it is."""

    def __init__(self) -> None:
        super().__init__(
            "No credentials: set SLUICE_CLIENT_ID and SLUICE_CLIENT_SECRET (your API client, from "
            "the operator), or SLUICE_TOKEN (a platform token), or pass --client-id/--client-secret.")


Tracer = Callable[[str, str, JSON | None, httpx.Response], None]


@dataclass
class Transport:
    """Authenticated JSON calls to the Sluice services."""

    client_id: str | None = None
    client_secret: str | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    token: str | None = None
    timeout: float = 30.0
    trace: Tracer | None = None
    #: Where platform tokens are kept between runs (the CLI's); None: only in memory.
    token_cache: TokenCache | None = None
    _http: httpx.Client = field(init=False, repr=False)
    _expires: float = field(default=0.0, init=False, repr=False)
    _from_cache: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=self.timeout)
        if self.token:
            self._expires = float("inf")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, service: str, path: str) -> str:
        return self.endpoints.base(service) + path

    # --- tokens ------------------------------------------------------------------------
    def token_response(self) -> JSON:
        """``POST /oauth/token`` (client credentials, HTTP Basic, form body): the whole answer."""
        if not (self.client_id and self.client_secret):
            raise CredentialsMissing
        url = self.url("access", "/oauth/token")
        form = {"grant_type": "client_credentials"}
        resp = self._http.post(url, data=form, auth=(self.client_id, self.client_secret))
        if self.trace:
            self.trace("POST", url, None, resp)
        if resp.status_code != 200:
            raise ApiError("POST", url, resp.status_code, _body(resp))
        return dict(resp.json())

    def bearer(self) -> str:
        """A platform token, fetched with client credentials and reused until near expiry."""
        if self.token and time.monotonic() < self._expires:
            return self.token
        cached = self.token_cache.load() if self.token_cache else None
        if cached:
            self.token, self._from_cache = cached[0], True
            self._expires = time.monotonic() + (cached[1] - time.time())
            return self.token
        body = self.token_response()
        if self.token_cache:
            self.token_cache.save(body)
        self.token, self._from_cache = str(body["access_token"]), False
        self._expires = time.monotonic() + float(body.get("expires_in", 300)) - 30
        return self.token

    def _stale_cached_token(self, resp: httpx.Response, token: str | None) -> bool:
        """A cached token the service refused (revoked, signing key gone): drop it, retry."""
        if resp.status_code != 401 or token or not self._from_cache or not self.token_cache:
            return False
        self.token_cache.drop()
        self.token, self._expires, self._from_cache = None, 0.0, False
        return True

    # --- calls -------------------------------------------------------------------------
    def request(self, method: str, url: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None, headers: dict[str, str] | None = None,
                token: str | None = None, auth: bool = True, form: dict[str, str] | None = None,
                basic: bool = False) -> Any:
        """One call; a non-2xx answer raises :class:`ApiError` with the problem body.

        ``basic`` authenticates with the client's id and secret (RFC 6749 client
        authentication) instead of a bearer token.
        """
        hdrs = dict(headers or {})
        http_auth: tuple[str, str] | None = None
        if basic:
            if not (self.client_id and self.client_secret):
                raise CredentialsMissing
            http_auth = (self.client_id, self.client_secret)
        elif auth:
            hdrs["Authorization"] = f"Bearer {token or self.bearer()}"
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        resp = self._http.request(method, url, json=json, params=clean, headers=hdrs, data=form,
                                  auth=http_auth)
        if auth and not basic and self._stale_cached_token(resp, token):
            hdrs["Authorization"] = f"Bearer {self.bearer()}"
            resp = self._http.request(method, url, json=json, params=clean, headers=hdrs, data=form)
        if self.trace:
            self.trace(method, str(resp.request.url), json if json is not None else form, resp)
        if resp.status_code >= 300:
            raise ApiError(method, url, resp.status_code, _body(resp))
        if resp.headers.get("content-type", "").startswith(("application/x-ndjson", "text/")):
            return resp.text
        return resp.json() if resp.content else None

    def get(self, service: str, path: str, params: Mapping[str, Any] | None = None, *,
            auth: bool = True) -> JSON:
        """``GET`` a JSON object from ``service`` (``"catalog"``, ``"orders"``, ...)."""
        return as_object(self.request("GET", self.url(service, path), params=params, auth=auth))

    def post(self, service: str, path: str, body: Any = None, *,
             headers: dict[str, str] | None = None) -> JSON:
        """``POST`` a JSON body (or none) to ``service``; the answer's JSON object."""
        return as_object(self.request("POST", self.url(service, path), json=body, headers=headers))

    def put(self, service: str, path: str, body: Any) -> JSON:
        return as_object(self.request("PUT", self.url(service, path), json=body))

    def patch(self, service: str, path: str, body: Any) -> JSON:
        return as_object(self.request("PATCH", self.url(service, path), json=body))

    def stream_lines(self, url: str, params: Mapping[str, Any] | None = None) -> Iterator[str]:
        """The lines of a streamed (NDJSON) answer, read as they arrive."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Authorization": f"Bearer {self.bearer()}"}
        with self._http.stream("GET", url, params=clean, headers=headers) as resp:
            if resp.status_code >= 300:
                resp.read()
                raise ApiError("GET", url, resp.status_code, _body(resp))
            yield from (line for line in resp.iter_lines() if line.strip())

    def walk_pages(self, url: str, params: Mapping[str, Any] | None = None) -> Iterator[JSON]:
        """Every page of a cursor-paginated list, following ``next_cursor``."""
        query = dict(params or {})
        while True:
            page: JSON = self.request("GET", url, params=query)
            yield page
            if not page.get("next_cursor"):
                return
            query["cursor"] = page["next_cursor"]

    def pages(self, url: str, params: Mapping[str, Any] | None = None) -> Iterator[JSON]:
        """Every item of a cursor-paginated list (all pages)."""
        for page in self.walk_pages(url, params):
            yield from page["items"]


def as_object(value: Any) -> JSON:
    """The SDK's typed answers are JSON objects; a list (old bare-array endpoints) is
    wrapped as ``{"items": [...]}`` so callers see one shape."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"items": value}
    return {} if value is None else {"value": value}


def _body(resp: httpx.Response) -> JSON:
    try:
        body = resp.json()
        return body if isinstance(body, dict) else {"detail": body}
    except ValueError:
        return {"detail": resp.text[:500] or resp.reason_phrase}
