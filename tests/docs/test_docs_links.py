"""Links between the docs resolve, and every URL the guides call is a real endpoint."""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PORTS = {"8001": "catalog", "8002": "orders", "8003": "access", "8004": "audit", "8010": "dataservice"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)


def markdown_files() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    text = FENCE.sub("", path.read_text())
    return frozenset(slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M))


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(DOCS)))
def test_relative_links_and_anchors_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.relative_to(REPO)}: {broken}"


@cache
def route_patterns(service: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    app = importlib.import_module(f"services.{service}.app").create_app()
    patterns = []
    for path, ops in app.openapi()["paths"].items():
        regex = re.escape(path)
        regex = re.sub(r"\\\{[^}]+\\\}", r"[^/]+", regex)
        for method in ops:
            patterns.append((method.upper(), re.compile(f"^{regex}$")))
    return tuple(patterns)


def called_urls(text: str) -> list[tuple[str, str]]:
    """(port, path) of every http://127.0.0.1:<port>/... URL in shell examples."""
    out = []
    for port, path in re.findall(r"http://127\.0\.0\.1:(\d{4})(/[^\s'\"?)`]*)?", text):
        out.append((port, path or "/"))
    return out


@pytest.mark.parametrize("doc", [*sorted((DOCS / "guides").glob("*.md")), DOCS / "operations.md"],
                         ids=lambda p: p.name)
def test_every_url_the_guides_call_is_an_endpoint(doc: Path) -> None:
    unknown = []
    for port, path in called_urls(doc.read_text()):
        service = PORTS.get(port)
        if service is None or path == "/":  # localstripe, or a base URL given as an option
            continue
        # shell variables and elisions (`$PRD`, `ord_...`) stand for one path segment
        concrete = re.sub(r"\$\w+|\$\{\w+\}", "x", path).rstrip("/")
        if not any(p.match(concrete) for _, p in route_patterns(service)):
            unknown.append(f"{service}: {path}")
    assert not unknown, f"{doc.name} calls endpoints that do not exist: {unknown}"
