"""What a figure module provides: its rows' names, how it measures, and the measurement itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.budget import Budget
from bench.report import Row


@dataclass(frozen=True)
class Figure:
    key: str  # for --only
    title: str
    rows: tuple[tuple[str, str], ...]  # (row name, target) in the order run() returns them
    how: str  # the method, for the document
    run: Callable[[Budget], list[Row]]

    @property
    def row_names(self) -> list[str]:
        return [name for name, _ in self.rows]
