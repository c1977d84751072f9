"""The one image, checked statically (no Docker engine runs in CI): multi-stage,
installs the package from pyproject.toml, runs as a non-root user, checks its
own health, and lets the command pick the service."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from shared.settings import DEFAULT_PORTS
from tests.deploy.manifests import DEPLOY, REPO

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name}: no {keyword}"
        return found[-1]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages of a Dockerfile (line continuations joined, comments dropped)."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda g: args[g.group(1)], m.group(1))
            stages.append(Stage(base, m.group(2)))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> dict[str | None, Stage]:
    _, parsed = parse(DOCKERFILE.read_text())
    return {s.name: s for s in parsed}


@pytest.fixture(scope="module")
def runtime() -> Stage:
    _, parsed = parse(DOCKERFILE.read_text())
    return parsed[-1]  # the default target is the last stage


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"exec (JSON) form expected, got {args}"
    return value


def test_default_target_is_python_311_slim_runtime(runtime):
    assert runtime.name == "runtime"
    assert runtime.base == "python:3.11-slim"


def test_build_is_multi_stage_and_installs_the_package_from_pyproject(stages, runtime):
    build = stages["build"]
    assert build.base == "python:3.11-slim"
    runs = " ".join(build.all("RUN"))
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", runs), "pip install . (a regular install)"
    assert "-e" not in runs.split(), "no editable install in an image"
    copies = build.all("COPY")
    assert any("pyproject.toml" in c for c in copies)
    # The runtime takes only the built virtualenv: no compiler, no source tree.
    assert any(c.startswith("--from=build /opt/venv") for c in runtime.all("COPY"))
    assert not any("build-essential" in r for r in runtime.all("RUN"))


def test_everything_copied_into_the_image_exists(stages):
    for stage in stages.values():
        for copy in stage.all("COPY"):
            if copy.startswith("--from"):
                continue
            *sources, _dest = copy.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"


@pytest.mark.parametrize("stage_name", ["runtime", "localstripe"])
def test_images_run_as_a_non_root_user(stages, stage_name):
    user = stages[stage_name].last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"numeric non-root uid (Kubernetes runAsNonRoot needs it), got {user}"


def test_runtime_uid_matches_the_kubernetes_pods(runtime, rendered):
    uid = int(runtime.last("USER").split(":")[0])
    for doc in rendered["base"]:
        if doc["kind"] in {"Deployment", "Job"}:
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_runtime_has_a_healthcheck_that_runs_the_shipped_script(runtime):
    healthcheck = runtime.last("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD")
    assert "--interval" in options and "--timeout" in options
    cmd = exec_form(command.strip())
    assert cmd[0] == "python" and cmd[1] == "/opt/sluice/healthcheck.py"
    assert any(c.split()[-1] == "/opt/sluice/healthcheck.py" and "deploy/docker/healthcheck.py" in c
               for c in runtime.all("COPY"))


def test_the_command_picks_the_service(runtime):
    assert exec_form(runtime.last("ENTRYPOINT")) == ["python", "-m"]
    cmd = exec_form(runtime.last("CMD"))
    assert cmd[0].startswith("services.") and cmd[1] == "serve"


def test_runtime_exposes_every_service_port(runtime):
    exposed = {int(p) for expose in runtime.all("EXPOSE") for p in expose.split()}
    assert exposed == set(DEFAULT_PORTS.values())


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "**", "deny by default, then allow what the image needs"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    assert not any(a.startswith((".venv", "var", ".git")) for a in allowed)
