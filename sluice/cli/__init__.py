"""``sluice``: the command line for providers, buyers, regulators and operators.

Built with Typer (typed options, help on every option, shell completion) and Rich
(tables that wrap instead of cutting values, progress for long work); the typed
SDK underneath is :mod:`sluice.client`. Conventions for adding commands:
:mod:`sluice.cli.core`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sluice.cli.commands import access, audit, billing, catalog, data, identity, orders
from sluice.cli.core import (
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    FieldOption,
    OutputOption,
    State,
    remember_format,
    state_of,
)
from sluice.transport import ENVIRONMENT, Endpoints

EPILOG = (
    "[b]Environment[/b]\n\n"
    + "\n\n".join(f"  [cyan]{name}[/cyan]  {text}" for name, text in ENVIRONMENT.items())
    + f"\n\n[b]Exit status[/b]: 0 done · {EXIT_REFUSED} the API refused or failed (the error says why "
    f"and what to do) · {EXIT_USAGE} bad arguments or no credentials · {EXIT_UNREACHABLE} a service "
    "could not be reached."
)

app = typer.Typer(
    name="sluice", no_args_is_help=True, rich_markup_mode="rich", epilog=EPILOG,
    help="The Sluice marketplace from the command line: [b]--output table|json|yaml[/b] and "
         "[b]--field NAME[/b] work on every command, anywhere on the line.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _url_option(service: str) -> object:
    default = getattr(Endpoints(), service)
    return typer.Option(f"--{service}-url", envvar=f"SLUICE_{service.upper()}_URL", show_envvar=True,
                        help=f"the {service} service (default {default}).", show_default=False)


@app.callback()
def main_options(
    ctx: typer.Context,
    client_id: Annotated[str | None, typer.Option(
        envvar="SLUICE_CLIENT_ID", show_envvar=True,
        help="your API client's id (from the operator).")] = None,
    client_secret: Annotated[str | None, typer.Option(
        envvar="SLUICE_CLIENT_SECRET", show_envvar=True,
        help="your API client's secret (prefer the environment variable).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="SLUICE_TOKEN", show_envvar=True,
        help="a ready platform token instead of client credentials.")] = None,
    access_url: Annotated[str | None, _url_option("access")] = None,
    catalog_url: Annotated[str | None, _url_option("catalog")] = None,
    orders_url: Annotated[str | None, _url_option("orders")] = None,
    audit_url: Annotated[str | None, _url_option("audit")] = None,
    dataservice_url: Annotated[str | None, _url_option("dataservice")] = None,
    output_: OutputOption = None,
    field_: FieldOption = None,
) -> None:
    """Global options; the environment variables are the usual way to set them."""
    d = Endpoints()
    ctx.obj = State(client_id=client_id, client_secret=client_secret, token=token, endpoints=Endpoints(
        access=(access_url or d.access).rstrip("/"), catalog=(catalog_url or d.catalog).rstrip("/"),
        orders=(orders_url or d.orders).rstrip("/"), audit=(audit_url or d.audit).rstrip("/"),
        dataservice=(dataservice_url or d.dataservice).rstrip("/")))
    remember_format(ctx, output_, field_)
    state_of(ctx)


identity.register_top_level(app)
orders.register_top_level(app)
billing.register_top_level(app)
access.register_top_level(app)
for sub in (catalog.products, orders.quotes, orders.orders, billing.subscriptions, billing.offers,
            billing.invoices, billing.payouts, access.entitlements, access.tokens,
            data.query, data.privacy, audit.audit, identity.orgs, identity.clients, identity.keys,
            identity.oauth):
    app.add_typer(sub)


def main(argv: list[str] | None = None) -> int:
    """The ``sluice`` entry point; returns the exit status."""
    try:
        app(args=argv, prog_name="sluice")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
