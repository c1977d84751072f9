"""docs/security.md's "who may call what" table, read as data.

Two suites use it: tests/docs checks that the table lists every endpoint of every app,
and tests/e2e/test_platform_boot.py calls every endpoint of the running services with
every kind of caller and checks the answers against it. The "who may call it" column is
prose for people; the roles in it are what the tests read, so a row must name its roles
(or say ``anyone``/``any token``) outside parentheses, which hold the fine print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECURITY_MD = REPO / "docs" / "security.md"
ROLES = ("provider", "buyer", "regulator", "operator", "service")
ROW = re.compile(r"^\| (?P<service>[a-z ]+) \| `(?P<method>[A-Z]+)` \| `(?P<path>[^`]+)` \| (?P<who>.+) \|$")
EVERY_SERVICE = "every service"
#: How a row that needs no bearer token begins (or what it says).
PUBLIC_MARKS = ("anyone", "no token", "client authentication", "any client", "stripe only")
ANY_ROLE_MARKS = ("any token", "any valid token", "whoever")


def table_rows() -> dict[tuple[str, str, str], str]:
    """``{(service, METHOD, path): who}``; ``service`` may be ``every service``."""
    rows: dict[tuple[str, str, str], str] = {}
    for line in SECURITY_MD.read_text().splitlines():
        m = ROW.match(line)
        if m:
            key = (m["service"], m["method"], m["path"])
            assert key not in rows, f"duplicate row {key} in docs/security.md"
            rows[key] = m["who"].strip()
    return rows


def who_may_call(rows: dict[tuple[str, str, str], str], service: str, method: str, path: str) -> str | None:
    return rows.get((service, method, path)) or rows.get((EVERY_SERVICE, method, path))


@dataclass(frozen=True)
class Rule:
    """Who the table admits to one endpoint."""

    public: bool  # no bearer token needed
    data_access: bool  # takes a data-access token, not a platform token
    roles: frozenset[str] | None  # platform roles admitted; None: any (or not role-based)


def rule(service: str, who: str) -> Rule:
    text = who.replace("**", "").lower()
    fine_print_removed = re.sub(r"`[^`]*`", "", re.sub(r"\([^)]*\)", "", text)).strip()
    public = any(mark in text for mark in PUBLIC_MARKS) and "any token" not in text
    # A row may name the kind; otherwise the data service takes data-access tokens, the rest platform ones.
    data_access = "*platform token*" not in text and ("*data-access token*" in text or service == "dataservice")
    if public or data_access or fine_print_removed.startswith(ANY_ROLE_MARKS):
        return Rule(public, data_access, None)
    roles = frozenset(r for r in ROLES if re.search(rf"\b{r}\b", fine_print_removed))
    if not roles:
        raise ValueError(
            f"cannot tell who may call it from {who!r}: begin the 'who may call it' cell with the "
            f"roles ({', '.join(ROLES)}), 'any token', or 'anyone (no token)'; details go in "
            "parentheses")
    return Rule(public, data_access, roles)
