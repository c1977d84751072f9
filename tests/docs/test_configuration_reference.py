"""docs/configuration.md is generated from the Settings classes and must not go stale."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
REGENERATE = "python deploy/local/config_reference.py > docs/configuration.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", REPO / "deploy" / "local" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("config_reference", module)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_what_the_generator_prints() -> None:
    assert DOC.read_text() == generator().render(), f"docs/configuration.md is stale: run `{REGENERATE}`"


def test_every_settings_field_of_every_service_has_a_row() -> None:
    gen = generator()
    text = DOC.read_text()
    services = gen.discover()
    assert {name for name, _ in services} >= {"catalog", "orders", "access", "audit", "dataservice"}
    for name, cls in services:
        prefix = f"SLUICE_{name.upper()}_"
        for field in cls.model_fields:
            assert f"| `{prefix}{field.upper()}` |" in text, f"{prefix}{field.upper()} missing"


def test_every_service_settings_module_is_documented() -> None:
    documented = set(re.findall(r"^## (\w+)$", DOC.read_text(), flags=re.M))
    on_disk = {p.parent.name for p in (REPO / "services").glob("*/settings.py")}
    assert on_disk <= documented


def test_secret_defaults_are_not_printed() -> None:
    gen = generator()
    text = DOC.read_text()
    for _, cls in gen.discover():
        for name, field in cls.model_fields.items():
            if isinstance(field.default, SecretStr):
                value = field.default.get_secret_value()
                assert value and value not in text, f"{cls.__name__}.{name}'s default is printed"
    assert "*(secret)*" in text


def test_defaults_do_not_depend_on_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SLUICE_CATALOG_PORT", "9999")
    monkeypatch.setenv("SLUICE_ORDERS_STRIPE_API_BASE", "https://api.stripe.com")
    assert generator().render() == DOC.read_text()
