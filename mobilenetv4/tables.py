"""The one table writer: rows of cells -> Markdown, CSV or aligned text, written atomically.

table = Table(["model", "params", "MACs (G)"])
table.add(["conv_small", "3,774,024", "0.186"])
print(table.markdown())
table.write("out.csv")          # format from the suffix: .md, .csv, else text
"""

from __future__ import annotations

import csv
import io
import os
from typing import Iterable, Sequence


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Table:
    def __init__(self, columns: Sequence[str], rows: Iterable[Sequence] = ()):
        self.columns = [str(c) for c in columns]
        self.rows: list[list[str]] = []
        for row in rows:
            self.add(row)

    def add(self, row: Sequence) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"row has {len(row)} cells, table has {len(self.columns)} columns")
        self.rows.append([_cell(v) for v in row])

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buf.getvalue()

    def text(self) -> str:
        widths = [
            max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
            for i, c in enumerate(self.columns)
        ]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*self.columns), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row) for row in self.rows]
        return "\n".join(line.rstrip() for line in lines) + "\n"

    def render(self, fmt: str) -> str:
        if fmt not in ("markdown", "csv", "text"):
            raise ValueError(f"unknown table format {fmt!r}; use markdown, csv or text")
        return getattr(self, fmt)()

    def write(self, path: str | os.PathLike, fmt: str | None = None) -> str:
        """Writes atomically; the format follows the suffix (.md / .csv) unless given."""
        from mobilenetv4 import fileio

        path = os.fspath(path)
        fmt = fmt or (
            "markdown" if path.endswith(".md") else "csv" if path.endswith(".csv") else "text"
        )
        fileio.write_text(path, self.render(fmt))
        return path


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV written by `Table.write` as dicts (header -> cell)."""
    with open(os.fspath(path), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
