"""Tables for people: plain aligned text into a pipe or a file, rich's on a terminal."""

from __future__ import annotations

import io

import pytest
from baton import tables

ROWS = [{"name": "ocr", "cap": 4, "extra": None}, {"name": "llm-review", "cap": 12, "extra": {}}]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_text_aligns_every_column_and_marks_what_is_missing() -> None:
    assert tables.plain_table(ROWS, ("name", "cap", "extra")).splitlines() == [
        "name        cap  extra",
        "----------  ---  -----",
        "ocr         4    -",
        "llm-review  12   -",
    ]


def test_a_pipe_gets_plain_text() -> None:
    out = io.StringIO()
    tables.print_table(ROWS, ("name", "cap"), out)
    assert out.getvalue() == tables.plain_table(ROWS, ("name", "cap")) + "\n"


def test_a_terminal_gets_rich_s_table_where_rich_is_installed() -> None:
    out = Terminal()
    tables.print_table(ROWS, ("name", "cap"), out)
    drawn = out.getvalue()
    assert "┃" in drawn or "│" in drawn  # drawn with box characters
    for text in ("name", "cap", "ocr", "llm-review", "12"):
        assert text in drawn


def test_a_terminal_without_rich_gets_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "has_rich", lambda: False)
    out = Terminal()
    tables.print_table(ROWS, ("name", "cap"), out)
    assert out.getvalue() == tables.plain_table(ROWS, ("name", "cap")) + "\n"
