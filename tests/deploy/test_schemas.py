"""Every rendered document is a valid object of the pinned Kubernetes version."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import KUBERNETES_VERSION

# A dev dependency (pyproject.toml [dev]); it ships the Kubernetes JSON schemas, so
# validation needs no network. Skipped, and listed by `-ra`, where it is missing.
kubernetes_validate = pytest.importorskip("kubernetes_validate")


def test_every_document_validates_against_the_kubernetes_schema(overlay):
    name, docs = overlay
    errors = []
    for doc in docs:
        try:
            # strict: unknown fields (typos such as `readinessprobe`) are errors too.
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    assert errors == [], f"{name}: " + "\n".join(errors)


def test_schema_validation_catches_a_misspelt_field():
    """The validator really checks (strict mode, offline schemas), so the test above can fail."""
    bad = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "x", "image": "x", "readinesProbe": {}}]}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
