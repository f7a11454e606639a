"""``python -m bench``: measure every figure, print the table, write it with the machine's description."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.budget import FULL, QUICK
from bench.machine import describe
from bench.processes import REPO
from bench.report import Row, render_document, render_table
from bench.suite import FIGURES

DEFAULT_OUTPUT = REPO / "docs" / "BENCHMARKS.md"

NOTES = Path(__file__).with_name("NOTES.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny counts, well under a minute; checks the harness, not the figures",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the table (default: docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[f.key for f in FIGURES],
        help="measure only this figure (repeatable)",
    )
    return parser


def compile_bytecode() -> None:
    """Compile bridge's modules, as an install does (pip compiles what it installs).

    A first start writes the bytecode a later one reads, which each figure's warm-up
    counts on; under PYTHONDONTWRITEBYTECODE=1, or in a checkout it cannot write to,
    nothing is written, and every start of the CLI and the daemon compiled bridge's
    sources again (some 50 ms here) while the peers' bytecode came with their install.
    """
    import compileall

    compileall.compile_dir(REPO / "bridge", quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    budget = QUICK if args.quick else FULL
    compile_bytecode()
    machine = describe()  # before the load: the load average is the host's, not ours
    figures = [f for f in FIGURES if not args.only or f.key in args.only]
    rows: list[Row] = []
    errors = 0
    for figure in figures:
        print(f"measuring {figure.title} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            measured = figure.run(budget)
            if [r.figure for r in measured] != figure.row_names:
                raise RuntimeError(f"rows {[r.figure for r in measured]} != {figure.row_names}")
        except Exception as exc:  # one broken figure must not hide the others' rows
            errors += 1
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            measured = [Row.failed(name, target, reason) for name, target in figure.rows]
        rows += measured
        print(f"  done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    table = render_table(rows, quick=budget.quick)
    print(table)
    document = render_document(
        table,
        machine=machine,
        methods=[(f.title, f.how) for f in figures],
        quick=budget.quick,
        notes=NOTES.read_text(encoding="utf-8") if NOTES.exists() else "",
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(document, encoding="utf-8")
    print(f"written to {args.output}", file=sys.stderr)
    return 1 if errors else 0
