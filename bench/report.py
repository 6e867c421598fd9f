"""Figures from samples (percentiles, spread over rounds, ratios) and the table that prints them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Spread", "Table", "percentile", "ratio", "spread"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` from 0 to 1) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Spread:
    """The median of per-round figures, and the lowest and highest round."""

    median: float
    low: float
    high: float

    def text(self, scale: float = 1.0, digits: int = 2, sign: bool = False) -> str:
        plus = "+" if sign else ""

        def fmt(value: float) -> str:
            return f"{value * scale:{plus}.{digits}f}"

        if len({round(self.low * scale, digits), round(self.high * scale, digits)}) == 1:
            return fmt(self.median)
        return f"{fmt(self.median)} [{fmt(self.low)}…{fmt(self.high)}]"


def spread(values: Sequence[float]) -> Spread:
    return Spread(statistics.median(values), min(values), max(values))


def ratio(value: float, reference: float) -> str:
    """``value`` as a multiple of ``reference`` (``4.2x``); ``n/a`` when there is nothing to divide by."""
    if reference <= 0:
        return "n/a"
    multiple = value / reference
    return f"{multiple:.1f}x" if multiple < 100 else f"{multiple:.0f}x"


@dataclass
class Table:
    """Rows of measures, one column per target; renders as text for the terminal or as Markdown."""

    columns: list[str]
    title: str = "measure"
    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, cells: dict[str, str]) -> None:
        self.rows.append((measure, [cells.get(column, "") for column in self.columns]))

    def section(self, heading: str) -> None:
        self.rows.append((heading, []))

    def text(self) -> str:
        header = [self.title, *self.columns]
        body = [[measure, *cells] if cells else [measure] for measure, cells in self.rows]
        widths = [max(len(row[i]) for row in [header, *body] if len(row) > i) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * width for width in widths))
        for row in body:
            if len(row) == 1:
                lines.append(row[0])
                continue
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        return "\n".join([*lines, *self.notes])

    def markdown(self) -> str:
        lines = [f"| {self.title} | " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * (len(self.columns) + 1))
        for measure, cells in self.rows:
            if not cells:
                lines.append(f"| **{measure}** |" + " |" * len(self.columns))
                continue
            lines.append(f"| {measure} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(lines)
