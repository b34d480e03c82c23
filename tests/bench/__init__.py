"""Benchmarks, run by ``make bench``. Each ``bench_*.py`` module exposes ``run() -> list[Row]``.

Figures are reported next to a baseline measured in the same run, as a ratio: the machines this runs on
are shared and noisy, so absolute numbers mean little on their own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the benchmark table."""

    bench: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None  # the same figure for the baseline, measured in the same run
    baseline_name: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / baseline`` (higher is better for rates)."""
        if not self.baseline:
            return None
        return self.value / self.baseline


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    header = ("bench", "figure", "value", "baseline", "ratio")
    lines = [header]
    for row in rows:
        baseline = (
            f"{row.baseline:,.1f} {row.unit} ({row.baseline_name})" if row.baseline is not None else "-"
        )
        ratio = f"{row.ratio:,.3g}x" if row.ratio is not None else "-"
        lines.append((row.bench, row.figure, f"{row.value:,.1f} {row.unit}", baseline, ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)
