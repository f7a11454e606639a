"""The table: one row per figure, and the document that carries it with the machine's description."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure: what was measured, what it compares against, and whether it met its target."""

    figure: str
    value: str
    reference: str
    target: str
    met: bool | None  # None: not judged (not measured, or smoke mode)

    @classmethod
    def failed(cls, figure: str, target: str, reason: str) -> Row:
        return cls(figure, f"error: {reason}", "", target, None)


def verdict(row: Row, *, quick: bool) -> str:
    if row.value.startswith("error:"):
        return "ERROR"
    if quick:
        return "smoke run"
    if row.met is None:
        return "not measured"
    return "met" if row.met else "**MISSED**"


def render_table(rows: Sequence[Row], *, quick: bool) -> str:
    lines = [
        "| figure | measured | floor / reference | target | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.figure, row.value, row.reference, row.target, verdict(row, quick=quick))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def render_document(
    table: str,
    *,
    machine: Mapping[str, str],
    methods: Sequence[tuple[str, str]],
    quick: bool,
    notes: str = "",
) -> str:
    parts = [
        "# Benchmarks",
        "",
        "Written by `python -m bench` (a few minutes; `--quick` is the smoke run CI uses to "
        "check the harness, its figures mean nothing). Every figure is a median or a "
        "percentile of repeats, or a ratio against a floor measured in the same run, so "
        "numbers from different machines compare only through their ratios.",
        "",
    ]
    if quick:
        parts += [
            "> **Smoke run (`--quick`)**: tiny iteration counts; do not read the figures.",
            "",
        ]
    parts += ["## Machine", ""]
    parts += [f"- {key}: {value}" for key, value in machine.items()]
    parts += ["", "## Results", "", table, "", "## How each figure is measured", ""]
    parts += [f"- **{title}**: {how}" for title, how in methods]
    if notes:
        # Hand-written in bench/NOTES.md: what each target took, and why a miss is one.
        parts += ["", notes.strip()]
    return "\n".join(parts) + "\n"
