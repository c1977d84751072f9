"""Entitlements, data-access tokens, usage and the revocation feed."""

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

entitlements = group("entitlements", "Entitlements: the right to query one product version "
                     "(list; suspend, reinstate, revoke: regulator, operator).")
tokens = group("tokens", "Data-access tokens: issue (buyer), revoke, introspect.")

EntId = Annotated[str, typer.Argument(help="the entitlement's id (ent_...).")]
ProductId = Annotated[str, typer.Argument(help="the product's id (prd_...).")]
Token = Annotated[str, typer.Argument(help="the data-access token (eyJ...).", envvar="SLUICE_DATA_TOKEN",
                                      show_envvar=True)]
ENT_COLUMNS = ["id", "status", "product_id", "version", "purpose", "order_id", "valid_until",
               "usage.queries_remaining"]


@command(entitlements, "list", calls="access GET /v1/entitlements", columns=ENT_COLUMNS)
def ent_list(
    api: Api,
    product: Annotated[str | None, typer.Option(help="only this product's (prd_...).")] = None,
    order: Annotated[str | None, typer.Option(help="only this order's (ord_...).")] = None,
    buyer: Annotated[str | None, typer.Option(help="only this buyer organisation's (org_...).")] = None,
    provider: Annotated[str | None, typer.Option(
        help="only to this provider organisation's products (org_...).")] = None,
    limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False,
) -> Any:
    """Entitlements you may see: yours (buyer), your products' (provider), all (overseers)."""
    return paged(api.entitlements_page, all_pages=all_pages, cursor=cursor, limit=limit,
                 product_id=product, order_id=order, buyer=buyer, provider=provider)


@command(entitlements, "get", calls="access GET /v1/entitlements/{entitlement_id}")
def ent_get(api: Api, entitlement_id: EntId) -> Any:
    """One entitlement with its limits and usage."""
    return api.get_entitlement(entitlement_id)


@command(entitlements, "suspend", calls="access POST /v1/entitlements/{entitlement_id}/suspend")
def ent_suspend(api: Api, entitlement_id: EntId, reason: Reason) -> Any:
    """Suspend one buyer's access (no new tokens; live ones stop within the poll interval)."""
    return api.suspend_entitlement(entitlement_id, reason)


@command(entitlements, "reinstate", calls="access POST /v1/entitlements/{entitlement_id}/reinstate")
def ent_reinstate(api: Api, entitlement_id: EntId, reason: Reason) -> Any:
    """Lift the entitlement's own suspension (a product's or organisation's stays)."""
    return api.reinstate_entitlement(entitlement_id, reason)


@command(entitlements, "revoke", calls="access POST /v1/entitlements/{entitlement_id}/revoke")
def ent_revoke(api: Api, entitlement_id: EntId, reason: Reason) -> Any:
    """Revoke an entitlement for good."""
    return api.revoke_entitlement(entitlement_id, reason)


@command(entitlements, "revoke-order", calls="access POST /v1/entitlements/by-order/{order_id}/revoke")
def ent_revoke_order(api: Api, order_id: Annotated[str, typer.Argument(help="the order (ord_...).")],
                     reason: Reason) -> Any:
    """Revoke the entitlement an order granted (a refund does this by itself)."""
    return api.revoke_order_entitlement(order_id, reason)


@command(entitlements, "suspend-product", calls="access POST /v1/products/{product_id}/suspend-entitlements")
def ent_suspend_product(api: Api, product_id: ProductId, reason: Reason) -> Any:
    """Suspend every entitlement of a product (suspending the product does this by itself)."""
    return api.suspend_product_entitlements(product_id, reason)


@command(entitlements, "reinstate-product",
         calls="access POST /v1/products/{product_id}/reinstate-entitlements")
def ent_reinstate_product(api: Api, product_id: ProductId, reason: Reason) -> Any:
    """Lift the product suspension of every entitlement of a product."""
    return api.reinstate_product_entitlements(product_id, reason)


@command(tokens, "issue", calls="access POST /v1/entitlements/{entitlement_id}/tokens")
def token_issue(api: Api, entitlement_id: EntId, expires_in: Annotated[int | None, typer.Option(
        help="lifetime in seconds, 30 to 900 (default 900).")] = None) -> Any:
    """A short-lived data-access token for your entitlement (buyer).

    `DT=$(sluice tokens issue ENT --field access_token)`"""
    return api.issue_data_token(entitlement_id, expires_in)


@command(tokens, "revoke", calls="access POST /oauth/revoke")
def token_revoke(api: Api, token: Token) -> Any:
    """Give a data-access token back (RFC 7009, with your client's id and secret)."""
    api.revoke_token(token)
    return {"revoked": True}


@command(tokens, "introspect", calls="access POST /oauth/introspect")
def token_introspect(api: Api, token: Token) -> Any:
    """Is a data-access token live, and for what (RFC 7662; the product's provider, services)."""
    return api.introspect_token(token)


def register_top_level(app: typer.Typer) -> None:
    """``sluice usage`` and ``sluice revocations``."""

    @command(app, "usage", calls="access GET /v1/usage",
             columns=["usage_id", "entitlement_id", "query_number", "rows_returned",
                      "suppressed_groups", "epsilon_spent", "recorded_at"])
    def usage(api: Api, entitlement: Annotated[str | None, typer.Option(
                  help="only this entitlement's queries (ent_...).")] = None,
              limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
        """Answered queries: yours (buyer), on your products (provider), all (overseers)."""
        return paged(api.usage, all_pages=all_pages, cursor=cursor, limit=limit, entitlement_id=entitlement)

    @command(app, "revocations", calls="access GET /v1/revocations")
    def revocations(api: Api, since: Annotated[str | None, typer.Option(
                        help="the next_cursor of your previous read (omit the first time).")] = None,
                    limit: Limit = None) -> Any:
        """The revocation feed data services poll (revoked tokens, suspended entitlements)."""
        return api.revocations(since=since, limit=limit)
