"""The sluice CLI: argument parsing and output rendering."""

from __future__ import annotations

import json

import pytest

from sluice.cli import build_parser, emit, render_table


def test_table_renders_list_items_with_scalar_columns() -> None:
    out = render_table({"items": [{"id": "prd_1", "title": "A", "plans": [1]},
                                  {"id": "prd_2", "title": "B", "plans": []}], "next_cursor": None})
    lines = out.splitlines()
    assert lines[0].split() == ["id", "title"]
    assert lines[2].split() == ["prd_1", "A"]


def test_table_renders_an_object_as_key_value_lines() -> None:
    out = render_table({"id": "ord_1", "status": "paid"})
    assert out.splitlines() == ["id      ord_1", "status  paid"]


def test_empty_list_says_nothing() -> None:
    assert render_table([]) == "(nothing)"


def test_json_output_is_valid_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"a": [1, 2]}, "json")
    assert json.loads(capsys.readouterr().out) == {"a": [1, 2]}


@pytest.mark.parametrize("argv", [
    ["products", "search", "--q", "health"],
    ["orders", "create", "--quote", "quo_1", "--purpose", "research"],
    ["tokens", "issue", "ent_1"],
    ["query", "run", "--url", "http://127.0.0.1:8010", "--data-token", "t", "--json", "{}"],
    ["audit", "verify", "--", "--start", "0"],
    ["-o", "json", "orders", "list"],
])
def test_documented_commands_parse(argv: list[str]) -> None:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    assert (args.group, args.command) in handlers
