"""Where a server's CPU time goes, from py-spy's raw (collapsed-stack) samples.

``BENCH_PROFILE=1`` makes ``bench/common.Server`` run every server under
``py-spy record --format raw`` (``pip install py-spy``); when the server stops this prints
a summary: CPU samples by layer (the library the innermost Python frame belongs to: the
database driver, SQLAlchemy, pydantic, JWT, Starlette/FastAPI, uvicorn, logging, ...),
and the project functions with the most inclusive time.

    .venv/bin/python bench/profile.py /tmp/sluice-bench-123/audit-w1-40000.pyspy.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")

#: First match wins: path fragment -> layer.
LAYERS = [
    ("/asyncpg/", "asyncpg (PostgreSQL driver)"),
    ("/aiosqlite/", "aiosqlite (SQLite driver)"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("/pydantic", "pydantic"),
    ("/jose/", "python-jose (JWT)"),
    ("/cryptography/", "cryptography"),
    ("/fastapi/", "FastAPI"),
    ("/starlette/", "Starlette"),
    ("/uvicorn/", "uvicorn"),
    ("/httptools/", "httptools"),
    ("/prometheus_client/", "prometheus_client (metrics)"),
    ("/logging/", "logging"),
    ("/json/", "json (stdlib)"),
    ("/orjson", "orjson"),
    ("/rfc8785/", "rfc8785 (canonical JSON)"),
    ("/httpx/", "httpx"),
    ("/httpcore/", "httpx"),
    ("/asyncio/", "asyncio"),
    ("/services/", "project: services"),
    ("/shared/", "project: shared"),
]


def layer_of(path: str) -> str:
    path = "/" + path.lstrip("/")  # py-spy prints site-packages paths relative ("sqlalchemy/...")
    for fragment, name in LAYERS:
        if fragment in path:
            return name
    return "other (stdlib, interpreter)"


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            if raw.startswith("process "):  # py-spy's per-process pseudo frame
                continue
            m = FRAME.match(raw.strip())
            frames.append((m["func"], "/" + m["file"].lstrip("/")) if m else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def summarise(path: Path, title: str = "py-spy profile", top: int = 12) -> str:
    # Start-up (imports) is not what a benchmark measures.
    stacks = [(f, c) for f, c in parse(path) if not any(fn == "_find_and_load" for fn, _ in f)]
    total = sum(c for _, c in stacks)
    if not total:
        return f"{title}: no samples"
    layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        leaf_func, leaf_file = frames[-1] if frames else ("?", "")
        layers[layer_of(leaf_file)] += count
        leaves[f"{leaf_file.lstrip('/')}:{leaf_func}"] += count
        seen = set()
        for func, file in frames:
            if func in ("<module>", "run_cli"):
                continue
            if ("/services/" in file or "/shared/" in file) and (func, file) not in seen:
                seen.add((func, file))
                short = file[file.find("/services/") + 1 :] if "/services/" in file else \
                    file[file.find("/shared/") + 1 :]
                inclusive[f"{short}:{func}"] += count
    out = [f"{title}: {total} CPU samples (idle excluded)", "  by layer (innermost Python frame):"]
    out += [f"    {100 * c / total:5.1f}%  {name}" for name, c in layers.most_common()]
    out.append("  project functions, inclusive:")
    out += [f"    {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    out.append("  innermost functions (self time):")
    out += [f"    {100 * c / total:5.1f}%  {name}" for name, c in leaves.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarise(Path(arg), title=arg))
