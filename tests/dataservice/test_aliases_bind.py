"""`python -m services.dataservice bind`: one binding added, none lost, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.dataservice.aliases import BindingRefused, bind, read_aliases

KNOWN = {"prd_demo_transit", "prd_demo_health"}


def test_binding_keeps_the_bindings_already_there(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    bind(path, "prd_a", "prd_demo_health", KNOWN)
    bind(path, "prd_b", "prd_demo_transit", KNOWN)
    assert read_aliases(path, KNOWN) == {"prd_a": "prd_demo_health", "prd_b": "prd_demo_transit"}


def test_appending_a_second_aliases_key_by_hand_loses_the_first(tmp_path: Path) -> None:
    """Why the guide no longer says `cat >> aliases.yaml`: YAML keeps the last `aliases:`."""
    path = tmp_path / "aliases.yaml"
    bind(path, "prd_a", "prd_demo_health", KNOWN)
    with path.open("a") as f:
        f.write("aliases:\n  prd_b: prd_demo_transit\n")
    assert "prd_a" not in read_aliases(path, KNOWN)


def test_rebinding_an_id_replaces_only_that_binding(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    bind(path, "prd_a", "prd_demo_health", KNOWN)
    bind(path, "prd_b", "prd_demo_health", KNOWN)
    bind(path, "prd_a", "prd_demo_transit", KNOWN)
    assert read_aliases(path, KNOWN) == {"prd_a": "prd_demo_transit", "prd_b": "prd_demo_health"}


def test_other_members_of_the_file_survive(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text("# provider notes\nowner: data-team\naliases:\n  prd_a: prd_demo_health\n")
    bind(path, "prd_b", "prd_demo_transit", KNOWN)
    doc = yaml.safe_load(path.read_text())
    assert doc["owner"] == "data-team" and set(doc["aliases"]) == {"prd_a", "prd_b"}


def test_an_unknown_mapped_product_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BindingRefused, match="prd_demo_health, prd_demo_transit"):
        bind(tmp_path / "aliases.yaml", "prd_a", "prd_secret_table", KNOWN)
    assert not (tmp_path / "aliases.yaml").exists()


@pytest.mark.parametrize("bad", ["prd a", "prd_a\nowner: x", "", "prd_a: x"])
def test_a_catalog_id_that_is_not_one_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BindingRefused):
        bind(tmp_path / "aliases.yaml", bad, "prd_demo_health", KNOWN)


def test_an_unreadable_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text("aliases: [unclosed\n")
    with pytest.raises(BindingRefused, match="not valid YAML"):
        bind(path, "prd_a", "prd_demo_health", KNOWN)
    assert path.read_text() == "aliases: [unclosed\n"


def test_the_command_binds_in_the_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    env = {"SLUICE_DATASERVICE_PRODUCT_ALIASES_FILE": str(path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "services.dataservice", "bind", "prd_a", "prd_demo_transit"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert read_aliases(path, KNOWN) == {"prd_a": "prd_demo_transit"}
    refused = subprocess.run([sys.executable, "-m", "services.dataservice", "bind", "prd_b", "nope"],
                             env=env, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "not in the product mapping" in refused.stderr
