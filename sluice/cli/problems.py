"""Problem+json (RFC 9457) and OAuth errors, shown so a person knows what to do next."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from sluice.cli.output import raw, stderr_console
from sluice.client import ApiError

#: The next step when the service's own ``detail`` is not enough, by status.
NEXT_STEP = {
    400: "Fix the request as the detail says.",
    401: "Check SLUICE_CLIENT_ID/SLUICE_CLIENT_SECRET (or SLUICE_TOKEN); data services take a "
         "data-access token (`sluice tokens issue ENT`), everything else a platform token.",
    402: "Pay again with another payment method (`sluice orders pay ORD --payment-method ...`).",
    403: "Your client's roles or this object's state do not allow it; `sluice me` shows your roles.",
    404: "Check the id; what you may not see answers 404 too.",
    409: "It conflicts with what is there now (a name taken, or a state that does not allow "
         "this); `get` the object to see its state.",
    422: "Fix the fields or the rule named above.",
    429: "Slow down and retry after the time the service asked for.",
    503: "A service is down or busy; nothing was changed. Retry in a moment.",
}
#: Members shown on their own lines, not as extras.
_STANDARD = {"type", "title", "status", "detail", "instance", "errors", "error", "error_description"}


def show_problem(exc: ApiError) -> None:
    """Print the error on stderr: what happened, why, which rule, what to do."""
    body: dict[str, Any] = exc.problem
    console = stderr_console()
    title = body.get("title") or body.get("error") or "Error"
    slug = exc.type_slug
    console.print(Text.assemble(("error ", "bold red"), (f"{exc.status} ", "bold"), (str(title), "bold"),
                                (f"  ({slug})" if slug else "", "dim")))
    detail = body.get("detail") or body.get("error_description")
    if detail:
        console.print(Text(str(detail)))
    extras = {k: v for k, v in body.items() if k not in _STANDARD}
    listed = body.get("errors")
    errors: list[Any] = listed if isinstance(listed, list) else []
    if extras or errors:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for key, value in extras.items():
            grid.add_row(key, raw(value))
        for err in errors:
            if isinstance(err, dict):
                where = ".".join(str(p) for p in (err.get("location"), err.get("field")) if p)
                grid.add_row(where or "error", str(err.get("message", err)))
        console.print(grid)
    step = NEXT_STEP.get(exc.status) or (NEXT_STEP[503] if exc.status >= 500 else None)
    if step:
        console.print(Text.assemble(("what to do: ", "bold"), step))
    if slug and "type" in body:
        console.print(Text(f"more: docs/problems.md#{slug}   ({exc.method} {exc.url})", style="dim"))
    else:
        console.print(Text(f"({exc.method} {exc.url})", style="dim"))
