"""Reading the deployment files for the tests: a small Kustomize renderer, the
services in the repository, and what their settings accept.

The renderer implements exactly the Kustomize features deploy/k8s uses
(`resources` files and folders, `namespace`, `images`, `replicas`, and
strategic-merge `patches` including `$patch: delete`) and refuses any other
field, so a kustomization that starts using a new feature fails these tests
instead of being checked half-rendered. test_kustomize.py compares its output
with `kubectl kustomize` wherever kubectl is installed.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
#: The Kubernetes version whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.31.0"

Doc = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "IngressClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
#: Lists that strategic merge combines element by element (patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name"}


def service_names() -> list[str]:
    """Every service in services/ (a package with a `python -m` entry point)."""
    return sorted(p.parent.name for p in (REPO / "services").glob("*/__main__.py"))


def settings_fields(service: str) -> set[str]:
    """Field names the service's settings class accepts (env SLUICE_<SERVICE>_<FIELD>)."""
    module = importlib.import_module(f"services.{service}.settings")
    classes = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, ServiceSettings) and obj.service_name == service
    ]
    assert len(classes) == 1, f"services/{service}/settings.py should define one settings class"
    return set(classes[0].model_fields)


def load_yaml_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(directory: Path) -> list[Doc]:
    """The resources `kubectl kustomize <directory>` would print (order aside)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise NotImplementedError(f"{directory}: kustomization fields the test renderer lacks: {unknown}")
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs.extend(render(path) if path.is_dir() else load_yaml_docs(path))
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for patch_entry in kustomization.get("patches", []):
        unknown = set(patch_entry) - {"path", "patch"}
        if unknown:
            raise NotImplementedError(f"{directory}: patch options the test renderer lacks: {unknown}")
        text = (directory / patch_entry["path"]).read_text() if "path" in patch_entry else patch_entry["patch"]
        for patch in (d for d in yaml.safe_load_all(text) if d):
            docs = _apply_patch(docs, patch)
    for rep in kustomization.get("replicas", []):
        target = _find(docs, {"Deployment", "StatefulSet"}, rep["name"])
        target["spec"]["replicas"] = rep["count"]
    for image in kustomization.get("images", []):
        for container in iter_containers(docs):
            _set_image(container, image)
    return docs


def _find(docs: list[Doc], kinds: set[str], name: str) -> Doc:
    found = [d for d in docs if d["kind"] in kinds and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"expected one {kinds} named {name}, found {len(found)}")
    return found[0]


def _apply_patch(docs: list[Doc], patch: Doc) -> list[Doc]:
    target = _find(docs, {patch["kind"]}, patch["metadata"]["name"])
    if patch.get("$patch") == "delete":
        return [d for d in docs if d is not target]
    _merge(target, patch)
    return docs


def _merge(base: Doc, patch: Doc) -> None:
    for key, value in patch.items():
        if key == "$patch":
            continue
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(base.get(key), list):
            merge_key = MERGE_KEYS[key]
            for item in value:
                existing = [b for b in base[key] if b.get(merge_key) == item.get(merge_key)]
                if existing:
                    _merge(existing[0], item)
                else:
                    base[key].append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def _set_image(container: Doc, image: Doc) -> None:
    name, tag, digest = split_image(container["image"])
    if name != image["name"]:
        return
    name = image.get("newName", name)
    if "digest" in image:
        container["image"] = f"{name}@{image['digest']}"
    elif "newTag" in image:
        container["image"] = f"{name}:{image['newTag']}"
    else:
        container["image"] = name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        return name, tag, digest or None
    return name, None, digest or None


def pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    if doc["kind"] == "CronJob":
        spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    return None


def iter_containers(docs: list[Doc]) -> Iterator[Doc]:
    for doc in docs:
        spec = pod_spec(doc)
        if spec is not None:
            yield from spec.get("initContainers", [])
            yield from spec["containers"]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels / matchExpressions, or a Service's
    plain map) selects these labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def serving_service(container: Doc) -> str | None:
    """`catalog` for a container running `python -m services.catalog serve ...`."""
    args = container.get("args", [])
    if len(args) >= 2 and args[0].startswith("services.") and args[1] == "serve":
        return str(args[0].split(".", 1)[1])
    return None


def serve_port(container: Doc) -> int:
    args = container["args"]
    return int(args[args.index("--port") + 1])
