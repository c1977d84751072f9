"""Which RFC 9457 problem types the code can raise, found by reading the source (AST).

Found: ``problem = "x"`` in ``ProblemError`` subclasses; ``problem="x"`` keyword arguments
anywhere; ``problem_response(status, "x", ...)``; the ``(slug, title)`` tuples of dicts named
``*PROBLEMS*``; and literal arguments to helpers that pass one of their parameters on as
``problem=`` (``_refuse("quota-exhausted", ...)``). Each with the file and line raising it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("services", "shared")


def python_files() -> Iterator[Path]:
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def forwarding_helpers(trees: dict[Path, ast.Module]) -> dict[str, int]:
    """Functions that pass a parameter on as ``problem=``: name → that parameter's position."""
    helpers: dict[str, int] = {}
    for tree in trees.values():
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [a.arg for a in fn.args.args]
            for call in ast.walk(fn):
                if isinstance(call, ast.Call):
                    for kw in call.keywords:
                        if kw.arg == "problem" and isinstance(kw.value, ast.Name) and kw.value.id in params:
                            helpers[fn.name] = params.index(kw.value.id)
    return helpers


def raised_problem_types() -> dict[str, list[str]]:
    """problem type → ["services/x.py:12", ...] where the code can produce it."""
    trees = {p: ast.parse(p.read_text(), str(p)) for p in python_files()}
    helpers = forwarding_helpers(trees)
    found: dict[str, list[str]] = defaultdict(list)

    def add(slug: str | None, path: Path, node: ast.AST) -> None:
        if slug:
            found[slug].append(f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}")

    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "problem":
                        add(_str(kw.value), path, node)
                name = _callee(node)
                if name == "get" and isinstance(node.func, ast.Attribute) and len(node.args) > 1 \
                        and "PROBLEMS" in ast.unparse(node.func.value) and isinstance(node.args[1], ast.Tuple):
                    add(_str(node.args[1].elts[0]), path, node)
                if name == "problem_response" and len(node.args) > 1:
                    add(_str(node.args[1]), path, node)
                if name in helpers and len(node.args) > helpers[name]:
                    add(_str(node.args[helpers[name]]), path, node)
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign):
                        for target in stmt.targets:
                            names = target.elts if isinstance(target, ast.Tuple) else [target]
                            values = stmt.value.elts if isinstance(stmt.value, ast.Tuple) else [stmt.value]
                            for n, v in zip(names, values, strict=False):
                                if isinstance(n, ast.Name) and n.id == "problem":
                                    add(_str(v), path, stmt)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                if isinstance(target, ast.Name) and "PROBLEMS" in target.id and isinstance(node.value, ast.Dict):
                    for value in node.value.values:
                        if isinstance(value, ast.Tuple) and value.elts:
                            add(_str(value.elts[0]), path, value)
    return dict(found)


if __name__ == "__main__":
    for slug, where in sorted(raised_problem_types().items()):
        more = f" (+{len(where) - 1})" if len(where) > 1 else ""
        print(f"{slug:40} {where[0]}{more}")
