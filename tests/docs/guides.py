"""Run the shell examples of README.md and docs/guides/*.md against a real marketplace.

Conventions (for everyone who writes a guide):

- Every fenced block tagged ``sh`` (or ``bash``/``shell``) is executed, in document order,
  in **one bash per document** (``set -euo pipefail``): variables and functions set by an
  earlier block are there for later ones, and any failing command fails the test, naming
  the document and line. Blocks tagged otherwise (``json``, ``yaml``, ``console``, none)
  are not run; put example output in comments (``# {"id": ...}``) or such blocks.
- A directive in an HTML comment on the line right before a fence changes that block:
  - ``<!-- guide: skip REASON -->`` — not run (a reason is required; keep these rare:
    things that cannot run in a test, e.g. a production deployment).
  - ``<!-- guide: fails TEXT -->`` — run in a subshell; it must exit non-zero and its
    output must contain TEXT (e.g. the problem type it shows: ``fails query-refused``).
    Variables it sets do not survive it.
  - ``<!-- guide: file NAME -->`` — the block's text is written to ``NAME`` (relative to the
    working directory) at that point, e.g. a JSON document the next block sends.
- The working directory stands in for a fresh clone after ``make run``: ``.venv`` is the
  repository's, ``var/dev.env`` holds the operator client (as ``make run`` writes it), and
  ``HOME`` is a scratch folder. ``http://127.0.0.1:<port>`` URLs of the services and
  localstripe are rewritten to the test marketplace's ports; the ``sluice`` CLI gets them
  from ``SLUICE_*_URL``. Documents run in :data:`ORDER` against one marketplace on which
  ``make demo`` ran first, so a guide may use what the demo or an earlier guide created
  (say so in its "Before you start").
- Inline commands in prose (`` `.venv/bin/sluice ...` ``) are not run, but their syntax is
  checked against the CLI (``test_guides.py``).

``python -m tests.docs.guides [DOC...]`` runs documents against the services named by
``SLUICE_*_URL`` (e.g. a ``make run`` marketplace, or one started by tests/e2e/cluster.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The documents whose commands are run, in this order (later ones use what earlier ones made).
ORDER = ("README.md", "docs/guides/provider.md", "docs/guides/regulator.md", "docs/guides/buyer.md",
         "docs/guides/operator.md")
SHELL_TAGS = {"sh", "bash", "shell"}
#: The local ports `make run` uses, by what listens there.
PORTS = {"8001": "catalog", "8002": "orders", "8003": "access", "8004": "audit", "8010": "dataservice",
         "8420": "localstripe"}
DIRECTIVE = re.compile(r"^<!--\s*guide:\s*(?P<kind>skip|fails|file)\b\s*(?P<arg>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int       # of the opening fence, 1-based
    tag: str
    text: str
    directive: str  # "", "skip", "fails" or "file"
    arg: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.directive in ("fails", "file") or (self.tag in SHELL_TAGS and self.directive != "skip")


def parse(doc: str, text: str) -> list[Block]:
    """The fenced blocks of a Markdown document with their directives."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, tag = i, m["info"].strip().split(" ")[0].lower()
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        prev = lines[start - 1].strip() if start else ""
        d = DIRECTIVE.match(prev)
        kind, arg = (d["kind"], d["arg"]) if d else ("", "")
        if kind == "skip" and not arg:
            raise ValueError(f"{doc}:{start + 1}: `guide: skip` needs a reason")
        if kind in ("file", "fails") and not arg:
            raise ValueError(f"{doc}:{start + 1}: `guide: {kind}` needs " +
                             ("a file name" if kind == "file" else "the text the failure shows"))
        out.append(Block(doc, start + 1, tag, "\n".join(body), kind, arg))
        i += 1
    return out


def rewrite_ports(text: str, urls: dict[str, str]) -> str:
    """`make run`'s local URLs → the test marketplace's."""
    def swap(m: re.Match[str]) -> str:
        service = PORTS.get(m["port"])
        return urls.get(service, m[0]) if service else m[0]
    return re.sub(r"http://127\.0\.0\.1:(?P<port>\d{4})", swap, text)


def script(blocks: list[Block], urls: dict[str, str]) -> str:
    """One bash script for a document: every runnable block in order, each announced, so a
    failure names the block it happened in."""
    parts = ["set -euo pipefail", '__guide_at=""',
             "trap '__rc=$?; [ $__rc -eq 0 ] || echo \"::guide-failed at $__guide_at (exit $__rc)\" >&2' EXIT"]
    for b in blocks:
        if not b.runs:
            continue
        body = rewrite_ports(b.text, urls)
        parts.append(f"__guide_at={shlex.quote(b.where)}")
        parts.append(f"echo {shlex.quote('::guide-block ' + b.where)} >&2")
        if b.directive == "file":
            marker = "__GUIDE_FILE_END__"
            parts.append(f"cat > {shlex.quote(b.arg)} <<'{marker}'\n{body}\n{marker}")
        elif b.directive == "fails":
            expect = shlex.quote(b.arg)
            parts.append(f"__out=$(mktemp)\nset +e\n(\n{body}\n) > \"$__out\" 2>&1\n__rc=$?\nset -e\n"
                         f"cat \"$__out\"\n"
                         f"if [ $__rc -eq 0 ]; then echo '::guide-expected-a-failure' >&2; exit 99; fi\n"
                         f"grep -qF -- {expect} \"$__out\" || {{ echo '::guide-failed-differently, "
                         f"expected '{expect} >&2; exit 98; }}")
        else:
            parts.append(body)
    parts.append("echo '::guide-done' >&2")
    return "\n".join(parts) + "\n"


@dataclass
class Outcome:
    doc: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def failed_at(self) -> str | None:
        m = re.search(r"::guide-failed at (\S+)", self.stderr)
        return m[1] if m else (None if self.returncode == 0 else "?")

    def report(self, blocks: list[Block]) -> str:
        where = self.failed_at
        block = next((b for b in blocks if b.where == where), None)
        shown = f"\n--- the block ---\n{block.text}" if block else ""
        tail = "\n".join((self.stdout + "\n" + self.stderr).splitlines()[-60:])
        return f"{self.doc} failed at {where} (exit {self.returncode}){shown}\n--- output (tail) ---\n{tail}"


def prepare_workdir(workdir: Path, operator_id: str, operator_secret: str, aliases_file: str) -> None:
    """What `make run` leaves in a fresh clone: .venv, var/dev.env."""
    workdir.mkdir(parents=True, exist_ok=True)
    venv = workdir / ".venv"
    if not venv.exists():
        venv.symlink_to(REPO / ".venv")
    (workdir / "var").mkdir(exist_ok=True)
    (workdir / "var" / "dev.env").write_text(
        f"SLUICE_ACCESS_BOOTSTRAP_CLIENT_ID={operator_id}\n"
        f"SLUICE_ACCESS_BOOTSTRAP_CLIENT_SECRET={operator_secret}\n"
        f"SLUICE_DATASERVICE_PRODUCT_ALIASES_FILE={aliases_file}\n")
    (workdir / "home").mkdir(exist_ok=True)


def shell_env(workdir: Path, urls: dict[str, str], aliases_file: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir / "home"),
           "LANG": "C.UTF-8", "COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb",
           "SLUICE_DATASERVICE_PRODUCT_ALIASES_FILE": aliases_file}
    for service in ("access", "catalog", "orders", "audit", "dataservice"):
        env[f"SLUICE_{service.upper()}_URL"] = urls[service]
    return env


def run_document(doc: str, workdir: Path, urls: dict[str, str], env: dict[str, str],
                 timeout: float = 300.0, text: str | None = None) -> tuple[Outcome, list[Block]]:
    """Run a document's blocks in one bash (``text`` instead of the file, for tests)."""
    blocks = parse(doc, (REPO / doc).read_text() if text is None else text)
    done = subprocess.run(["bash", "-c", script(blocks, urls)], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return Outcome(doc, done.returncode, done.stdout, done.stderr), blocks


def inline_commands(text: str) -> Iterator[str]:
    """`` `.venv/bin/sluice ...` `` mentions in prose (outside fenced blocks)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for m in re.finditer(r"`(?:\.venv/bin/)?sluice ([^`]+)`", prose):
        yield m[1]


def main(argv: list[str]) -> int:
    urls = {s: os.environ[f"SLUICE_{s.upper()}_URL"] for s in ("access", "catalog", "orders", "audit",
                                                               "dataservice")}
    urls["localstripe"] = os.environ.get("SLUICE_LOCALSTRIPE_URL", "http://127.0.0.1:8420")
    workdir = Path(os.environ.get("GUIDE_WORKDIR", "/tmp/sluice-guides"))
    aliases = os.environ["SLUICE_DATASERVICE_PRODUCT_ALIASES_FILE"]
    prepare_workdir(workdir, os.environ.get("SLUICE_OPERATOR_ID", "operator"),
                    os.environ["SLUICE_OPERATOR_SECRET"], aliases)
    env = shell_env(workdir, urls, aliases)
    for doc in argv or ORDER:
        outcome, blocks = run_document(doc, workdir, urls, env)
        print(outcome.report(blocks) if outcome.returncode else f"ok  {doc}")
        if outcome.returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
