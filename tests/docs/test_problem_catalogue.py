"""docs/problems.md documents every problem type the code can raise, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.problem_scan import raised_problem_types

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(?P<type>[a-z0-9-]+)` \| (?P<status>[^|]+) \| (?P<when>[^|]+) \| (?P<todo>[^|]+) \|$")


def documented() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in (REPO / "docs" / "problems.md").read_text().splitlines():
        m = ROW.match(line)
        if m:
            assert m["type"] not in rows, f"{m['type']} is documented twice"
            rows[m["type"]] = (m["status"].strip(), m["when"].strip(), m["todo"].strip())
    return rows


def test_every_problem_type_the_code_raises_is_documented() -> None:
    docs = documented()
    missing = {slug: where for slug, where in raised_problem_types().items() if slug not in docs}
    assert not missing, "document these problem types in docs/problems.md (type | status | when | " \
        "what to do): " + "; ".join(f"{s} (raised at {', '.join(w[:3])})" for s, w in sorted(missing.items()))


def test_every_documented_type_can_be_raised() -> None:
    stale = sorted(set(documented()) - set(raised_problem_types()))
    assert not stale, f"docs/problems.md documents types no code raises: {stale}"


def test_every_row_says_when_and_what_to_do() -> None:
    for slug, (status, when, todo) in documented().items():
        assert re.search(r"\d{3}|4xx", status), f"{slug}: status {status!r}"
        assert when and todo, f"{slug}: say when it happens and what to do"


def test_the_scan_finds_types_raised_through_helpers_and_subclasses() -> None:
    """The scan itself: a keyword, a subclass, a helper (`_refuse("...")`), the HTTP table."""
    found = raised_problem_types()
    for slug in ("slug-taken", "payment-failed", "quota-exhausted", "method-not-allowed", "http-error",
                 "query-refused", "validation-error"):
        assert slug in found, slug
