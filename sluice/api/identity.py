"""Access service: who you are, organisations, API clients, OAuth, signing keys (operator)."""

from __future__ import annotations

from typing import Any

from sluice.transport import JSON, Transport, as_object


class IdentityApi(Transport):
    def me(self, service: str = "access") -> JSON:
        """``GET /v1/me``: who the token says you are (any service answers)."""
        return self.get(service, "/v1/me")

    def health(self, service: str) -> JSON:
        """``GET /readyz`` of a service: ready when its database answers (no token)."""
        return self.get(service, "/readyz", auth=False)

    # --- OAuth 2.0 -----------------------------------------------------------------------
    def server_metadata(self) -> JSON:
        """RFC 8414 authorization server metadata."""
        return self.get("access", "/.well-known/oauth-authorization-server", auth=False)

    def jwks(self) -> JSON:
        """The public keys platform and data-access tokens are signed with."""
        return self.get("access", "/.well-known/jwks.json", auth=False)

    def revoke_token(self, token: str, token_type_hint: str | None = None) -> None:
        """RFC 7009: give a data-access token back (client authentication, form body)."""
        form = {"token": token, **({"token_type_hint": token_type_hint} if token_type_hint else {})}
        self.request("POST", self.url("access", "/oauth/revoke"), form=form, basic=True)

    def introspect_token(self, token: str) -> JSON:
        """RFC 7662: is this data-access token live, and for what (service, or its provider)."""
        # RFC 7662 §2.1: client authentication (Basic) when the client's secret is at hand,
        # else the bearer platform token (SLUICE_TOKEN), which the endpoint also takes.
        basic = bool(getattr(self, "client_id", None) and getattr(self, "client_secret", None))
        return as_object(self.request("POST", self.url("access", "/oauth/introspect"),
                                    form={"token": token}, basic=basic))

    # --- organisations ---------------------------------------------------------------------
    def create_organisation(self, name: str, roles: list[str]) -> JSON:
        return self.post("access", "/v1/organisations", {"name": name, "roles": roles})

    def list_organisations(self, **params: Any) -> JSON:
        """One page; filters ``role``, ``status``, ``limit``, ``cursor``."""
        return self.get("access", "/v1/organisations", params)

    def get_organisation(self, org_id: str) -> JSON:
        return self.get("access", f"/v1/organisations/{org_id}")

    def suspend_organisation(self, org_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/organisations/{org_id}/suspend", {"reason": reason})

    def reinstate_organisation(self, org_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/organisations/{org_id}/reinstate", {"reason": reason})

    # --- API clients ---------------------------------------------------------------------
    def create_api_client(self, org_id: str, name: str, roles: list[str] | None = None) -> JSON:
        """A new client of the organisation; the answer holds its secret, shown once."""
        body: JSON = {"name": name}
        if roles:
            body["roles"] = roles
        return self.post("access", f"/v1/organisations/{org_id}/clients", body)

    def list_clients(self, **params: Any) -> JSON:
        """One page; filters ``organisation_id``, ``limit``, ``cursor``."""
        return self.get("access", "/v1/clients", params)

    def get_client(self, client_id: str) -> JSON:
        return self.get("access", f"/v1/clients/{client_id}")

    def suspend_client(self, client_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/clients/{client_id}/suspend", {"reason": reason})

    def reinstate_client(self, client_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/clients/{client_id}/reinstate", {"reason": reason})

    def rotate_client_secret(self, client_id: str) -> JSON:
        """A new secret for the client, shown once (operator; the old one stops at once)."""
        return self.post("access", f"/v1/clients/{client_id}/rotate-secret")

    def rotate_own_secret(self, old_secret_expires_in: int = 3600) -> JSON:
        """A new secret for your own client, shown once; the current one keeps working for
        ``old_secret_expires_in`` seconds (0: stops now; at most 7 days)."""
        return self.post("access", "/v1/clients/me/rotate-secret",
                         {"old_secret_expires_in": old_secret_expires_in})

    # --- signing keys --------------------------------------------------------------------
    def list_signing_keys(self) -> JSON:
        return self.get("access", "/v1/signing-keys")

    def rotate_signing_key(self) -> JSON:
        return self.post("access", "/v1/signing-keys/rotate")
