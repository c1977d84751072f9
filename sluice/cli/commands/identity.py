"""Who you are, OAuth, organisations, API clients and signing keys (mostly operator)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sluice.cli.core import (
    AllPages,
    Api,
    Cursor,
    Limit,
    Reason,
    command,
    group,
    paged,
)

orgs = group("orgs", "Organisations: onboard, list, suspend and reinstate (operator).")
clients = group("clients", "API clients: create, list, suspend, rotate secrets (operator); "
                "rotate your own secret with an overlap (any client).")
keys = group("signing-keys", "The access service's token signing keys (operator).")
oauth = group("oauth", "OAuth 2.0 discovery: server metadata and the JWKS (no token needed).")

OrgId = Annotated[str, typer.Argument(help="the organisation's id (org_...).")]
ClientId = Annotated[str, typer.Argument(help="the API client's id (cli_...).")]
Roles = Annotated[str, typer.Option(help="comma-separated roles: provider, buyer, regulator, operator.")]


def roles_of(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def register_top_level(app: typer.Typer) -> None:
    """``sluice me``, ``sluice token``, ``sluice status``."""

    @command(app, "me", calls="every GET /v1/me")
    def me(api: Api, service: Annotated[str, typer.Option(
            help="ask this service (access, catalog, orders, audit) instead of access.")] = "access",
           ) -> Any:
        """Who your token says you are: client, organisation, roles."""
        return api.me(service)

    @command(app, "token", calls="access POST /oauth/token")
    def token(api: Api) -> Any:
        """Get a platform token for your client (OAuth 2.0 client credentials).

        `TOKEN=$(sluice token --field access_token)` for curl."""
        return api.token_response()

    @command(app, "status", calls="every GET /readyz", columns=["service", "url", "status", "detail"])
    def status(api: Api) -> Any:
        """Is every service up? (`/readyz`: the service and its database answer; no token)."""
        rows = []
        for name in ("access", "catalog", "orders", "audit", "dataservice"):
            url = api.endpoints.base(name)
            try:
                api.health(name)
                rows.append({"service": name, "url": url, "status": "ok", "detail": None})
            except Exception as exc:
                rows.append({"service": name, "url": url, "status": "failure", "detail": str(exc)})
        return rows


@command(oauth, "metadata", calls="access GET /.well-known/oauth-authorization-server")
def metadata(api: Api) -> Any:
    """RFC 8414 authorization server metadata (token endpoint, grant types, JWKS)."""
    return api.server_metadata()


@command(oauth, "jwks", calls="access GET /.well-known/jwks.json",
         columns=["kid", "kty", "alg", "use"])
def jwks(api: Api) -> Any:
    """The public keys that sign platform and data-access tokens."""
    return {"items": api.jwks().get("keys", [])}


# --- organisations ------------------------------------------------------------------------

@command(orgs, "create", calls="access POST /v1/organisations")
def org_create(api: Api, name: Annotated[str, typer.Option(help="the organisation's unique name.")],
               roles: Roles) -> Any:
    """Onboard an organisation with its roles."""
    return api.create_organisation(name, roles_of(roles) or [])


@command(orgs, "list", calls="access GET /v1/organisations",
         columns=["id", "name", "roles", "status", "created_at"])
def org_list(api: Api,
             role: Annotated[str | None, typer.Option(help="only organisations with this role.")] = None,
             status: Annotated[str | None, typer.Option(help="active or suspended.")] = None,
             limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
    """Organisations, newest first."""
    return paged(api.list_organisations, all_pages=all_pages, cursor=cursor, limit=limit,
                 role=role, status=status)


@command(orgs, "get", calls="access GET /v1/organisations/{org_id}")
def org_get(api: Api, org_id: OrgId) -> Any:
    """One organisation."""
    return api.get_organisation(org_id)


@command(orgs, "suspend", calls="access POST /v1/organisations/{org_id}/suspend")
def org_suspend(api: Api, org_id: OrgId, reason: Reason) -> Any:
    """Suspend an organisation: no new tokens for its clients; its entitlements are suspended."""
    return api.suspend_organisation(org_id, reason)


@command(orgs, "reinstate", calls="access POST /v1/organisations/{org_id}/reinstate")
def org_reinstate(api: Api, org_id: OrgId, reason: Reason) -> Any:
    """Lift an organisation's suspension."""
    return api.reinstate_organisation(org_id, reason)


# --- API clients -------------------------------------------------------------------------

@command(clients, "create", calls="access POST /v1/organisations/{org_id}/clients")
def client_create(api: Api, org: Annotated[str, typer.Option(help="the organisation (org_...).")],
                  name: Annotated[str, typer.Option(help="a name for the client, e.g. what runs it.")],
                  roles: Annotated[str | None, typer.Option(
                      help="comma-separated subset of the organisation's roles (default: all).")] = None,
                  ) -> Any:
    """Create an API client; its secret is in the answer, shown once.

    `read -r ID SECRET < <(sluice clients create --org ORG --name NAME
    --field client_id --field client_secret)`"""
    return api.create_api_client(org, name, roles_of(roles))


@command(clients, "list", calls="access GET /v1/clients",
         columns=["client_id", "organisation_id", "name", "roles", "status", "created_at"])
def client_list(api: Api,
                org: Annotated[str | None, typer.Option(help="only this organisation's clients.")] = None,
                limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
    """API clients (never their secrets)."""
    return paged(api.list_clients, all_pages=all_pages, cursor=cursor, limit=limit, organisation_id=org)


@command(clients, "get", calls="access GET /v1/clients/{client_id}")
def client_get(api: Api, client_id: ClientId) -> Any:
    """One API client."""
    return api.get_client(client_id)


@command(clients, "suspend", calls="access POST /v1/clients/{client_id}/suspend")
def client_suspend(api: Api, client_id: ClientId, reason: Reason) -> Any:
    """Suspend a client: it gets no new tokens."""
    return api.suspend_client(client_id, reason)


@command(clients, "reinstate", calls="access POST /v1/clients/{client_id}/reinstate")
def client_reinstate(api: Api, client_id: ClientId, reason: Reason) -> Any:
    """Lift a client's suspension."""
    return api.reinstate_client(client_id, reason)


@command(clients, "rotate-secret", calls="access POST /v1/clients/{client_id}/rotate-secret")
def client_rotate(api: Api, client_id: ClientId) -> Any:
    """Give a client a new secret (shown once); the old one stops working."""
    return api.rotate_client_secret(client_id)


@command(clients, "rotate-own-secret", calls="access POST /v1/clients/me/rotate-secret")
def client_rotate_own(api: Api, old_secret_expires_in: Annotated[int, typer.Option(
        min=0, max=7 * 86400,
        help="seconds your current secret keeps working beside the new one, while you deploy "
        "it (0: it stops now; at most 604800 = 7 days).")] = 3600) -> Any:
    """Rotate the secret of the client you are logged in as (any client; the new one is shown
    once). Both secrets work until the old one expires: no outage while you redeploy."""
    return api.rotate_own_secret(old_secret_expires_in)


# --- signing keys ------------------------------------------------------------------------

@command(keys, "list", calls="access GET /v1/signing-keys")
def keys_list(api: Api) -> Any:
    """The token signing keys and their state (active, retiring)."""
    return api.list_signing_keys()


@command(keys, "rotate", calls="access POST /v1/signing-keys/rotate")
def keys_rotate(api: Api) -> Any:
    """Start signing with a new key; the old one stays published until its tokens expire."""
    return api.rotate_signing_key()
