"""The sluice CLI without a marketplace: options, help, output formats, errors before any call."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from sluice.cli import app
from sluice.cli.output import emit, field_lines
from sluice.transport import ENVIRONMENT

runner = CliRunner()
TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "x" * 700 + ".sig"  # a data-access token is ~800 characters


def walk(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from walk(sub, (*path, name))


def test_every_option_and_argument_has_help_text() -> None:
    missing = [f"sluice {' '.join(path)} {p.name}" for path, cmd in walk(get_command(app))
               for p in cmd.params if not getattr(p, "help", None) and p.name not in ("help",)]
    assert not missing, f"give these a help= text: {missing}"


def test_every_command_has_a_docstring() -> None:
    missing = [" ".join(path) for path, cmd in walk(get_command(app)) if path and not cmd.help]
    assert not missing


def test_help_names_every_environment_variable() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ENVIRONMENT:
        assert name in result.output, name


def test_no_credentials_names_the_variables_instead_of_calling(monkeypatch) -> None:
    monkeypatch.delenv("SLUICE_CLIENT_ID", raising=False)
    # A closed port: had the CLI called anything, the error would be "cannot reach".
    result = runner.invoke(app, ["orgs", "list"], env={"SLUICE_ACCESS_URL": "http://127.0.0.1:9",
                                                      "COLUMNS": "200"})
    assert result.exit_code == 2
    assert "SLUICE_CLIENT_ID" in result.output and "SLUICE_CLIENT_SECRET" in result.output
    assert "401" not in result.output


def test_an_unreachable_service_is_named_with_its_variable() -> None:
    result = runner.invoke(app, ["audit", "checkpoint"],
                           env={"SLUICE_AUDIT_URL": "http://127.0.0.1:9", "COLUMNS": "200"})
    assert result.exit_code == 3
    assert "audit service" in result.output and "SLUICE_AUDIT_URL" in result.output


@pytest.mark.parametrize("argv", [
    ["-o", "json", "orgs", "list"],
    ["orgs", "-o", "json", "list"],
    ["orgs", "list", "-o", "json"],
    ["orgs", "list", "--output", "yaml"],
    ["--output=json", "products", "search", "--q", "x"],
])
def test_output_is_accepted_anywhere_on_the_line(argv: list[str]) -> None:
    # No credentials: the command is parsed, then stops at the credentials check (exit 2
    # with the credentials message, not a usage error about --output).
    result = runner.invoke(app, argv, env={"COLUMNS": "200"})
    assert "No credentials" in result.output, result.output


def test_a_bad_output_format_is_a_usage_error() -> None:
    result = runner.invoke(app, ["orgs", "list", "-o", "xml"])
    assert result.exit_code == 2


def test_table_shows_long_tokens_and_ids_whole(capsys) -> None:
    emit({"access_token": TOKEN, "entitlement_id": "ent_" + "a" * 40}, "table")
    flat = "".join(capsys.readouterr().out.split())
    assert TOKEN in flat and "ent_" + "a" * 40 in flat


def columns_of(table: str) -> list[str]:
    """Each column's text, lines joined: what a folded cell reads as."""
    lines = [line.strip().strip("│").split("│") for line in table.splitlines() if line.startswith("│")]
    return ["".join(line[i].strip() for line in lines) for i in range(len(lines[0]))]


@pytest.mark.parametrize("width", ["60", "200"])
def test_list_table_never_cuts_a_value(capsys, monkeypatch, width: str) -> None:
    monkeypatch.setenv("COLUMNS", width)
    rows = [{"id": f"ord_{i:024d}", "purpose": "research " * 12, "plan": "plan_" + "b" * 30}
            for i in range(3)]
    emit({"items": rows, "next_cursor": None}, "table")
    ids, purposes, plans = columns_of(capsys.readouterr().out)
    assert ids == "".join(r["id"] for r in rows)
    assert plans == "".join(r["plan"] for r in rows)
    assert purposes.replace(" ", "") == "".join(r["purpose"] for r in rows).replace(" ", "")


def test_ids_stay_on_one_line_when_the_terminal_is_wide_enough(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    emit([{"id": "cli_a1d50ca8b94db9c49ce7", "name": "a long name " * 6}], "table")
    assert "cli_a1d50ca8b94db9c49ce7" in capsys.readouterr().out


def test_field_prints_the_raw_value_only(capsys) -> None:
    emit({"access_token": TOKEN, "expires_in": 900}, "table", ["access_token"])
    assert capsys.readouterr().out == TOKEN + "\n"


def test_fields_of_a_page_are_one_tab_separated_line_per_item() -> None:
    page = {"items": [{"id": "a", "price": {"total": 1}}, {"id": "b", "price": {"total": 2}}],
            "next_cursor": None}
    assert field_lines(page, ["id", "price.total"]) == ["a\t1", "b\t2"]


def test_an_unknown_field_is_named_with_what_there_is() -> None:
    result = runner.invoke(app, ["products", "search", "--field", "nope"])
    assert result.exit_code == 2  # credentials first; the field check is covered below
    with pytest.raises(Exception, match=r"no field 'nope'.*it has: id"):
        field_lines({"id": "x"}, ["nope"])


def test_json_and_yaml_are_parseable(capsys) -> None:
    data = {"id": "prd_1", "plans": [{"id": "plan_1", "price": 4900}]}
    emit(data, "json")
    assert json.loads(capsys.readouterr().out) == data
    emit(data, "yaml")
    assert yaml.safe_load(capsys.readouterr().out) == data
