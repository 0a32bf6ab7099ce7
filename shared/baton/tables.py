"""Tables for people: rich's on a terminal where rich is installed, plain aligned text
otherwise.

The product does not depend on rich: the layer that ships ``baton`` to Lambda, where no
table is ever drawn, would carry it for nothing, and the development install
(baton-local) brings it anyway. Output that goes to a pipe or a file is plain text
either way, one row per line, so that grep and awk work on it (scripts take ``--json``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def cell(value: Any) -> str:
    """A value as a table shows it: ``-`` for nothing, a dict as ``key=value`` pairs."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items()) or "-"
    return str(value).replace("\n", " ")


def plain_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned columns under a header and a rule, trailing spaces trimmed."""
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[index]) for line in cells)])
        for index, column in enumerate(columns)
    ]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(columns), ["-" * width for width in widths], *cells]
    ]
    return "\n".join(lines)


def has_rich() -> bool:
    return importlib.util.find_spec("rich") is not None


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], stream: TextIO | None = None
) -> None:
    """Print ``rows`` to ``stream`` (stdout): drawn by rich on a terminal, plain text
    otherwise."""
    out = stream if stream is not None else sys.stdout
    if not (out.isatty() and has_rich()):
        print(plain_table(rows, columns), file=out)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, header_style="bold")
    for row in rows:
        table.add_row(*(cell(row.get(column)) for column in columns))
    Console(file=out).print(table)
