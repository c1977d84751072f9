"""RFC 9457 problem+json for every error path.

One set of handlers turns :class:`~shared.errors.ProblemError`, request
validation errors, unknown routes and unexpected exceptions into
``application/problem+json``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import PROBLEM_BASE, PROBLEM_JSON, ProblemError

logger = logging.getLogger("sluice.errors")


def problem_response(
    status: int,
    problem: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return field_errors(exc.errors())


def field_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors (``loc`` starting with where: ``body``, ``query``…) as the
    ``errors`` member of a validation problem."""
    errors = []
    for err in raw:
        loc = [str(p) for p in err.get("loc", ())]
        errors.append(
            {
                "location": loc[0] if loc else "body",
                "field": ".".join(loc[1:]) if len(loc) > 1 else "",
                "message": err.get("msg", "invalid"),
                "type": err.get("type", "value_error"),
            }
        )
    return errors


def validation_problem(errors: list[dict[str, Any]], instance: str | None = None) -> dict[str, Any]:
    """The body of the 422 ``validation-error`` problem for ``errors`` (:func:`field_errors`):
    what the handler below answers, and what a batch endpoint answers for one invalid item."""
    where = ", ".join(
        f"{e['location']}.{e['field']}" if e["field"] else e["location"] for e in errors[:5]
    )
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + "validation-error",
        "title": "The request is not valid",
        "status": 422,
        "detail": f"{len(errors)} field(s) failed validation: {where}. See `errors` for each one.",
    }
    if instance:
        body["instance"] = instance
    body["errors"] = errors
    return body


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that make every error problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return JSONResponse(
            exc.to_body(instance=request.url.path),
            status_code=exc.status,
            media_type=PROBLEM_JSON,
            headers=exc.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_problem(_field_errors(exc), request.url.path),
                            status_code=422, media_type=PROBLEM_JSON)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem, title = _HTTP_PROBLEMS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = (
                f"No route {request.method} {request.url.path}. "
                "See /docs for the routes this service offers."
            )
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed on {request.url.path}. See /docs."
        return problem_response(
            exc.status_code,
            problem,
            title,
            detail,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if (why := unstorable_input(exc)) is not None:
            return _unstorable(request, why)
        if not exc.connection_invalidated:
            return await _unexpected(request, exc)
        # The connection went away under the request (a database restart or failover, a
        # terminated backend): the pool replaces it, the client should simply try again.
        logger.warning("lost the database connection during %s %s: %s", request.method,
                       request.url.path, exc.orig)
        return problem_response(
            503,
            "database-unavailable",
            "Database connection lost",
            "The service lost its database connection while handling this request; retry in a "
            "moment. Its transaction was rolled back unless the connection dropped at its very "
            "commit: to be sure a write happened, read it back, or repeat it with the same "
            "Idempotency-Key or id where the endpoint takes one.",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if (why := unstorable_input(exc)) is not None:
            return _unstorable(request, why)
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal-error",
            "Internal error",
            # Unsure by definition: the request may hold a value the code mishandles (that is
            # what fuzzing finds), so the body does not claim the client is blameless.
            "The service failed unexpectedly while handling this request. Retrying later may "
            "work; if the same request keeps failing, something in it may be a value the service "
            "mishandles. Either way it is a bug here: quote the X-Request-ID header when "
            "reporting it.",
            instance=request.url.path,
        )


#: PostgreSQL data exceptions that only a value sent by the client produces here: a character
#: the database cannot store (NUL: 22021, 22P05), a number or time beyond its column (22003,
#: 22008), text longer than its column (22001).
_INPUT_SQLSTATES = {"22021": "text the database cannot store (e.g. a NUL character)",
                    "22P05": "text the database cannot store", "22003": "a number too large for it",
                    "22008": "a date or time out of range", "22001": "text too long for it"}


def unstorable_input(exc: BaseException) -> str | None:
    """Why ``exc`` means the request held a value no database column can take, or ``None``.
    Found by fuzzing (tests/e2e/test_schemathesis.py): these used to be 500s."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state in _INPUT_SQLSTATES:
            return _INPUT_SQLSTATES[state]
        if isinstance(seen, OverflowError) and "SQLite INTEGER" in str(seen):
            return "a number too large for it"
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def _unstorable(request: Request, why: str) -> JSONResponse:
    logger.info("refused a value the database cannot store on %s %s: %s", request.method,
                request.url.path, why)
    return problem_response(
        422, "validation-error", "The request is not valid",
        f"The request holds {why}: nothing was stored. Send text without NUL characters and "
        "numbers within the documented bounds.",
        instance=request.url.path,
        errors=[{"location": "body", "field": "", "message": f"holds {why}", "type": "unstorable_value"}],
    )


# --- OpenAPI documentation of problem responses -------------------------------


class FieldError(BaseModel):
    location: str = Field(examples=["body"])
    field: str = Field(examples=["roles.0"])
    message: str = Field(examples=["Input should be 'provider', 'buyer', 'regulator' or 'operator'"])
    type: str = Field(examples=["enum"])


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=[PROBLEM_BASE + "not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No organisation org_123; list them with GET /v1/organisations."])
    instance: str | None = Field(default=None, examples=["/v1/organisations/org_123"])
    errors: list[FieldError] | None = Field(
        default=None, description="Field-level errors (validation problems only)."
    )


def problem_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting problem+json bodies for ``statuses``."""
    text = {
        400: "Malformed request",
        401: "Missing, expired or invalid token",
        403: "The token's roles do not allow this",
        404: "Not found (or not visible to you)",
        409: "Conflicts with the current state",
        422: "Validation failed or a rule refused the request",
        503: "A dependency is unavailable; retry later",
    }
    return {
        s: {"model": Problem, "description": text.get(s, "Error"),
            "content": {PROBLEM_JSON: {}}}
        for s in statuses
    }
