"""Strict query parameters: a parameter an endpoint does not take is a 422, not ignored.

Why: ignoring unknown parameters turns a typo into a wrong answer. A regulator asking for
``GET /v1/orders?provider_org=…`` got every order, as if filtered, and could file the wrong
evidence. Every service installs :func:`strict_query_parameters` for all its routes
(shared.app); the 422 names each unknown parameter, and the one meant when it is a known
old or foreign spelling.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from shared.errors import ProblemError

#: Spellings people (and older clients) use for a filter, and its name on this platform:
#: the same filter has the same name in every service (docs/README.md "Lists and filters").
DID_YOU_MEAN: dict[str, str] = {
    "provider_org": "provider", "provider_id": "provider", "buyer_org": "buyer", "buyer_id": "buyer",
    "page_size": "limit", "per_page": "limit", "page": "cursor", "offset": "cursor", "state": "status",
    "product": "product_id",
}

_KNOWN: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def known_query_parameters(route: Any) -> frozenset[str] | None:
    """The query parameters ``route`` declares (cached per route); ``None`` for non-API routes."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    known = _KNOWN.get(id(route))
    if known is None:
        known = _KNOWN[id(route)] = frozenset(_query_names(dependant))
    return known


async def strict_query_parameters(request: Request) -> None:
    """Refuse query parameters the matched route does not declare (422 validation-error)."""
    known = known_query_parameters(request.scope.get("route"))
    if known is None:
        return
    unknown = sorted({name for name in request.query_params if name not in known})
    if not unknown:
        return
    takes = ", ".join(sorted(known)) or "none"
    errors, named = [], []
    for name in unknown:
        hint = DID_YOU_MEAN.get(name)
        meant = f" (did you mean {hint!r}?)" if hint in known else ""
        named.append(f"{name!r}{meant}")
        errors.append({"location": "query", "field": name, "type": "extra_forbidden",
                       "message": f"Unknown query parameter{meant}; this endpoint takes: {takes}."})
    raise ProblemError(
        f"Unknown query parameter(s) {', '.join(named)}: refused rather than ignored, so a misspelt "
        f"filter cannot return everything. This endpoint takes: {takes}.",
        status=422, problem="validation-error", title="The request is not valid", errors=errors,
    )
