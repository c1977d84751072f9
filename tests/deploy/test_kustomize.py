"""The test renderer agrees with Kustomize (where kubectl is installed) and
implements the features deploy/k8s uses."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.manifests import OVERLAYS, Doc, render


def identity(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_renderer_matches_kubectl_kustomize(name):
    out = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAYS[name])], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    expected = {identity(d): d for d in yaml.safe_load_all(out) if d}
    ours = {identity(d): d for d in render(OVERLAYS[name])}
    assert sorted(ours) == sorted(expected)
    for key, doc in expected.items():
        assert ours[key] == doc, f"{key} differs from kubectl kustomize"


def test_renderer_refuses_kustomize_features_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(NotImplementedError, match="commonLabels"):
        render(tmp_path)


def test_renderer_applies_strategic_merge_by_container_name(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text("resources: [d.yaml]\n")
    (base / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec:\n  template:\n    spec:\n      containers:\n"
        "        - {name: a, image: 'img:1', resources: {requests: {cpu: 1m}}}\n"
        "        - {name: b, image: 'other:1'}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [base]\nimages: [{name: img, newTag: '2'}]\nreplicas: [{name: d, count: 4}]\n"
        "patches:\n  - patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n"
        "      metadata: {name: d}\n      spec:\n        template:\n          spec:\n"
        "            containers:\n              - {name: a, resources: {limits: {cpu: 2m}}}\n"
    )
    (doc,) = render(tmp_path)
    a, b = doc["spec"]["template"]["spec"]["containers"]
    assert a == {"name": "a", "image": "img:2", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "2m"}}}
    assert b == {"name": "b", "image": "other:1"}
    assert doc["spec"]["replicas"] == 4
