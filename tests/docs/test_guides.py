"""Every command in README.md and docs/guides/*.md works as written, against real processes.

The runner and its conventions (``sh`` blocks run in order in one bash per document;
``<!-- guide: skip|fails|file -->`` directives) are in tests/docs/guides.py.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from typer.main import get_command

from sluice.cli import app
from tests.docs.guides import ORDER, REPO, inline_commands, parse, prepare_workdir, run_document, shell_env
from tests.e2e.cluster import OPERATOR_ID, OPERATOR_SECRET, Cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shell(live_marketplace: Cluster, tmp_path_factory: pytest.TempPathFactory):
    """A fresh clone's working directory on the test marketplace, after `make demo`."""
    urls = {**live_marketplace.urls, "localstripe": live_marketplace.stripe.url}
    workdir = tmp_path_factory.mktemp("guides")
    aliases = str(live_marketplace.aliases_file)
    prepare_workdir(workdir, OPERATOR_ID, OPERATOR_SECRET, aliases)
    env = shell_env(workdir, urls, aliases)
    demo = subprocess.run(
        [str(REPO / "deploy/local/demo.sh"), "--env-file", str(workdir / "var/dev.env"),
         "--aliases-file", aliases, "--checkpoint-file", str(workdir / "demo-checkpoint.txt")],
        env=env, capture_output=True, text=True, timeout=240, check=False)
    return workdir, urls, env, demo


def test_make_demo_runs_and_prints_requests_as_sent(shell) -> None:
    demo = shell[3]
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    out = demo.stdout
    # The token endpoint takes a form (never JSON), and orders carry their Idempotency-Key.
    assert "body: grant_type=client_credentials" in out
    assert '{"grant_type"' not in out
    assert "Idempotency-Key: demo-" in out
    assert "the regulator verified every step" in out


@pytest.mark.parametrize("doc", ORDER)
def test_document_runs_as_written(shell, doc: str) -> None:
    workdir, urls, env, _ = shell
    outcome, blocks = run_document(doc, workdir, urls, env)
    assert outcome.returncode == 0, outcome.report(blocks)
    assert "::guide-done" in outcome.stderr


def test_every_guide_is_run() -> None:
    on_disk = {"README.md", *(str(p.relative_to(REPO)) for p in (REPO / "docs/guides").glob("*.md"))}
    assert on_disk <= set(ORDER), f"add to tests/docs/guides.py ORDER: {sorted(on_disk - set(ORDER))}"


# --- the CLI commands mentioned in prose ---------------------------------------------

def words(command: str) -> list[str]:
    """A command line's words (quotes honoured where they balance)."""
    try:
        return shlex.split(command)
    except ValueError:  # a line cut inside a quoted argument
        return command.split()


def resolve(argv: list[str]) -> str | None:
    """None if the sluice command line names a real command and only its options; else why."""
    cmd = get_command(app)
    options = {o for p in cmd.params for o in getattr(p, "opts", [])}
    words = [w for w in argv if not w.startswith("-")]
    path = []
    while hasattr(cmd, "commands") and words:
        name = words.pop(0)
        if name not in cmd.commands:
            return f"no command {' '.join([*path, name])}"
        path.append(name)
        cmd = cmd.commands[name]
        options |= {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    if hasattr(cmd, "commands"):
        return f"{' '.join(path)} needs a subcommand"
    unknown = [w.split("=")[0] for w in argv if w.startswith("-") and w.split("=")[0] not in options]
    return f"sluice {' '.join(path)}: no option {unknown}" if unknown else None


@pytest.mark.parametrize("doc", ORDER)
def test_cli_commands_in_prose_exist(doc: str) -> None:
    bad = []
    for line in inline_commands((REPO / doc).read_text()):
        why = resolve(words(line.replace("...", "x")))
        if why:
            bad.append(f"`sluice {line}`: {why}")
    assert not bad, f"{doc}: {bad}"


def test_cli_commands_in_blocks_exist() -> None:
    """Also for skipped blocks, which are not run."""
    bad = []
    for doc in ORDER:
        for b in parse(doc, (REPO / doc).read_text()):
            for line in b.text.replace("\\\n", " ").splitlines():
                if ".venv/bin/sluice " in line:
                    cmd = line.split(".venv/bin/sluice ", 1)[1].split("#")[0].split(")")[0]
                    why = resolve(words(cmd))
                    if why:
                        bad.append(f"{b.where}: {why}")
    assert not bad, bad


# --- the runner itself ---------------------------------------------------------------------

def run_text(tmp_path: Path, text: str):
    return run_document("doc.md", tmp_path, {}, {"PATH": "/usr/bin:/bin"}, text=text)


def test_a_failing_command_fails_the_document_naming_its_line(tmp_path: Path) -> None:
    outcome, _ = run_text(tmp_path, "# t\n\n```sh\ntrue\n```\n\n```sh\nfalse\necho never\n```\n")
    assert outcome.returncode != 0 and outcome.failed_at == "doc.md:7"
    assert "never" not in outcome.stdout


def test_variables_carry_from_block_to_block_and_files_are_written(tmp_path: Path) -> None:
    text = ("<!-- guide: file x.json -->\n```json\n{\"a\": 1}\n```\n\n"
            "```sh\nA=$(cat x.json)\n```\n\n```sh\n[ \"$A\" = '{\"a\": 1}' ]\n```\n")
    outcome, _ = run_text(tmp_path, text)
    assert outcome.returncode == 0, outcome.stderr


def test_an_expected_failure_must_fail_and_say_what_it_says(tmp_path: Path) -> None:
    ok, _ = run_text(tmp_path, "<!-- guide: fails refused -->\n```sh\necho refused; false\n```\n")
    assert ok.returncode == 0, ok.stderr
    passed, _ = run_text(tmp_path, "<!-- guide: fails refused -->\n```sh\necho refused\n```\n")
    assert passed.returncode != 0
    other, _ = run_text(tmp_path, "<!-- guide: fails refused -->\n```sh\necho typo; false\n```\n")
    assert other.returncode != 0


def test_a_skip_needs_a_reason_and_is_not_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        parse("doc.md", "<!-- guide: skip -->\n```sh\nfalse\n```\n")
    outcome, _ = run_text(tmp_path, "<!-- guide: skip production only -->\n```sh\nfalse\n```\n")
    assert outcome.returncode == 0


def test_an_unset_variable_fails(tmp_path: Path) -> None:
    outcome, _ = run_text(tmp_path, "```sh\necho \"$NEVER_SET\"\n```\n")
    assert outcome.returncode != 0


def test_the_prose_check_catches_drift() -> None:
    assert resolve(["orders", "list", "--status", "paid", "-o", "json"]) is None
    assert "no option" in str(resolve(["orders", "list", "--provider-org", "x"]))
    assert "no command" in str(resolve(["orders", "show", "x"]))
    assert "needs a subcommand" in str(resolve(["orders"]))
