"""The error base class: every refusal is a :class:`ProblemError`.

Plain Python (no FastAPI), so domain modules can raise these; the handlers in
:mod:`shared.problems` turn them into RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://sluice.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error that becomes a problem+json response.

    Subclasses set ``status``, ``problem`` (the type slug) and ``title``; raise
    them with a ``detail`` that says what was wrong and what to do next.
    """

    status: int = 400
    problem: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        problem: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if problem is not None:
            self.problem = problem
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extra = extra

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.problem,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(ProblemError):
    status, problem, title = 400, "bad-request", "Bad request"


class Unauthorized(ProblemError):
    status, problem, title = 401, "unauthorized", "Authentication required"


class Forbidden(ProblemError):
    status, problem, title = 403, "forbidden", "Not allowed"


class NotFound(ProblemError):
    status, problem, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, problem, title = 409, "conflict", "Conflict"


class RuleViolation(ProblemError):
    """A domain rule refused the request (422); ``rule`` names the rule."""

    status, problem, title = 422, "rule-violation", "A rule refused the request"


class ServiceUnavailable(ProblemError):
    status, problem, title = 503, "unavailable", "Service unavailable"
