"""The CLI's conventions in one place: groups, commands, common options, errors, paging.

A command is a plain function that takes the SDK client (``api: Api``) and its own
options, and *returns* the answer; :func:`command` adds ``--output`` and
``--field`` to it, builds the client from the global options, prints the answer
and turns errors into readable messages and exit codes. See
``/work/notes/cli-conventions.md`` (and the README) for how to add one.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer

from sluice.cli import output
from sluice.client import ApiError, CredentialsMissing, Endpoints, SluiceClient

Api = SluiceClient
JSON = dict[str, Any]

#: Exit codes (also in ``sluice --help``).
EXIT_REFUSED = 1      # the API answered with an error (4xx/5xx)
EXIT_USAGE = 2        # bad arguments or no credentials
EXIT_UNREACHABLE = 3  # a service could not be reached


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[Format | None, typer.Option(
    "--output", "-o", help="table (for people), json or yaml (for scripts); accepted anywhere "
    "on the line.", show_default=False)]
FieldOption = Annotated[list[str] | None, typer.Option(
    "--field", "-f", help="print only this member, raw (repeat for several: tab-separated; "
    "dotted paths like price.total; a list prints one line per item).", show_default=False)]
Limit = Annotated[int | None, typer.Option(help="items per page (the service's default when unset).")]
Cursor = Annotated[str | None, typer.Option(help="continue from a previous page's next_cursor.")]
AllPages = Annotated[bool, typer.Option("--all", help="follow next_cursor and return every page.")]
Reason = Annotated[str, typer.Option("--reason", help="why (recorded on the object and in the audit log).")]


@dataclass
class State:
    """The global options of one invocation (set by the root callback)."""

    client_id: str | None = None
    client_secret: str | None = None
    token: str | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    output: Format = Format.table
    fields: list[str] = field(default_factory=list)
    _client: SluiceClient | None = None

    def client(self) -> SluiceClient:
        if self._client is None:
            from sluice import token_cache

            cache = None
            if self.client_id and self.client_secret and not self.token and token_cache.enabled():
                cache = token_cache.TokenCache.for_client(self.endpoints.access, self.client_id,
                                                          self.client_secret)
            self._client = SluiceClient(self.client_id, self.client_secret, self.endpoints,
                                        token=self.token, token_cache=cache)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def state_of(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def remember_format(ctx: typer.Context, fmt: Format | None, fields: list[str] | None) -> None:
    """``--output``/``--field`` given at this level (the last one on the line wins)."""
    st = state_of(ctx)
    if fmt is not None:
        st.output = fmt
    if fields:
        st.fields = list(fields)


def group(name: str, help_text: str) -> typer.Typer:
    """A command group (``sluice products ...``) that also accepts ``--output``/``--field``."""
    sub = typer.Typer(name=name, help=help_text, no_args_is_help=True, rich_markup_mode="rich")

    @sub.callback()
    def _options(ctx: typer.Context, output_: OutputOption = None, field_: FieldOption = None) -> None:
        remember_format(ctx, output_, field_)

    return sub


def command(app: typer.Typer, name: str, *, calls: str | Sequence[str],
            columns: Sequence[str] | None = None, hidden: bool = False
            ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as ``sluice <group> <name>``.

    ``calls`` names the endpoint(s), ``"<service> <METHOD> <path>"`` exactly as in the
    OpenAPI document (shown in ``--help``; tests check every endpoint has a command).
    ``columns`` chooses the table's columns for list answers (dotted paths allowed).
    The function's docstring is its help; every option needs ``help=``.
    """
    endpoints = [calls] if isinstance(calls, str) else list(calls)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if hints.get(p.name) is not Api]
        wants_api = any(h is Api for h in hints.values())
        extra = [
            inspect.Parameter("sluice_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
            inspect.Parameter("output_", inspect.Parameter.KEYWORD_ONLY, annotation=OutputOption,
                              default=None),
            inspect.Parameter("field_", inspect.Parameter.KEYWORD_ONLY, annotation=FieldOption,
                              default=None),
        ]

        def run(*, sluice_ctx: typer.Context, output_: Format | None = None,
                field_: list[str] | None = None, **kwargs: Any) -> None:
            remember_format(sluice_ctx, output_, field_)
            st = state_of(sluice_ctx)
            try:
                result = fn(st.client(), **kwargs) if wants_api else fn(**kwargs)
                output.emit(result, st.output.value, st.fields, columns)
            except output.FieldMissing as exc:
                fail(str(exc), EXIT_USAGE)
            except ApiError as exc:
                from sluice.cli.problems import show_problem

                show_problem(exc)
                raise typer.Exit(EXIT_REFUSED) from None
            except CredentialsMissing as exc:
                fail(str(exc), EXIT_USAGE)
            except httpx.TransportError as exc:
                fail(unreachable(exc, st.endpoints), EXIT_UNREACHABLE)
            finally:
                st.close()

        run.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in own + extra}
        run.__name__, run.__doc__, run.__module__ = fn.__name__, fn.__doc__, fn.__module__
        api_line = "\n\n".join(f"API: `{e}`" for e in endpoints)
        app.command(name, help=f"{inspect.cleandoc(fn.__doc__ or '')}\n\n{api_line}",
                    hidden=hidden)(run)
        REGISTRY.append((name, endpoints))
        return fn

    return register


#: (command name, endpoints) of every command, for the coverage test.
REGISTRY: list[tuple[str, list[str]]] = []


def fail(message: str, code: int) -> typing.NoReturn:
    output.stderr_console().print(f"[bold red]error:[/bold red] {message}")
    raise typer.Exit(code)


def unreachable(exc: httpx.TransportError, env: Endpoints) -> str:
    """Which service could not be reached, and which variable points at it."""
    url = str(exc.request.url) if _has_request(exc) else "a service"
    names = [n for n in ("access", "catalog", "orders", "audit", "dataservice")
             if url.startswith(env.base(n))]
    where = f"the {names[0]} service at {env.base(names[0])} (SLUICE_{names[0].upper()}_URL)" \
        if names else url
    return f"cannot reach {where}: {exc}. Is `make run` up, and is the URL right?"


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True


# --- paging ----------------------------------------------------------------------------------

def paged(fetch: Callable[..., JSON], *, all_pages: bool, cursor: str | None, limit: int | None,
          **filters: Any) -> JSON:
    """One page (``--cursor``/``--limit``), or with ``--all`` every page merged into one
    answer (the other members, e.g. totals, from the last page), with a progress line."""
    if not all_pages:
        return fetch(cursor=cursor, limit=limit, **filters)
    items: list[Any] = []
    last: JSON = {}
    with output.stderr_console().status("fetching pages…") as status:
        for page in _walk(fetch, cursor, limit, filters):
            items += page.get("items", [])
            last = page
            status.update(f"fetched {len(items)} items…")
    return {**last, "items": items, "next_cursor": None}


def _walk(fetch: Callable[..., JSON], cursor: str | None, limit: int | None,
          filters: dict[str, Any]) -> Iterator[JSON]:
    while True:
        page = fetch(cursor=cursor, limit=limit, **filters)
        yield page
        cursor = page.get("next_cursor")
        if not cursor or not page.get("items"):
            return


# --- input ----------------------------------------------------------------------------------

JsonText = Annotated[str | None, typer.Option("--json", help="the JSON document inline.")]
JsonFile = Annotated[str | None, typer.Option(
    "--file", help="read the JSON document from this file ('-' for standard input).")]


def load_document(text: str | None, path: str | None) -> JSON:
    """The JSON object given with ``--json`` or ``--file``; a clear usage error otherwise."""
    import json
    import sys
    from pathlib import Path

    if (text is None) == (path is None):
        fail("give the document with --file PATH (or '-' for stdin) or --json '{...}'", EXIT_USAGE)
    try:
        source = text if text is not None else (
            sys.stdin.read() if path == "-" else Path(str(path)).read_text())
        doc = json.loads(source)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)
    except json.JSONDecodeError as exc:
        fail(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", EXIT_USAGE)
    if not isinstance(doc, dict):
        fail("the document must be a JSON object ({...})", EXIT_USAGE)
    return doc
