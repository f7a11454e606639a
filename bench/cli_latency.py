"""CLI latency: ``oauth-bridge status --json`` against a running daemon, and what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from bench.budget import Budget
from bench.figure import Figure
from bench.processes import REPO, running_daemon
from bench.report import Row
from bench.stats import median, ms

LATENCY = "CLI latency (status --json)"
LATENCY_TARGET = "<= 6x `python -c pass`"
MAX_RATIO = 6.0
IMPORTS = "CLI imports no server stack"
IMPORTS_TARGET = "no aiohttp, no pydantic"
SERVER_STACK = ("aiohttp", "pydantic", "pydantic_core")
STATUS = [sys.executable, "-m", "bridge", "status", "--json"]


def time_one(argv: Sequence[str], env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(list(argv), env=dict(env), cwd=REPO, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{argv!r} exited {result.returncode}: {result.stderr[-1000:]!r}")
    return elapsed


def server_stack_imports(env: Mapping[str, str]) -> list[str]:
    """Return the server-stack modules ``status --json`` imports, from ``-X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *STATUS[1:]],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    if not json.loads(result.stdout).get("running"):
        raise RuntimeError("status --json did not find the daemon")
    # Lines read "import time: self [us] | cumulative | <indent>module".
    modules = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line}
    return sorted(m for m in modules if m.split(".")[0] in SERVER_STACK)


def run(budget: Budget) -> list[Row]:
    with running_daemon() as (_, box):
        env = box.environ()
        floor = [sys.executable, "-c", "pass"]
        time_one(STATUS, env)  # warm-up: bytecode and page cache
        cli_times: list[float] = []
        floor_times: list[float] = []
        for _ in range(budget.cli_runs):
            cli_times.append(time_one(STATUS, env))
            floor_times.append(time_one(floor, env))
        stack = server_stack_imports(env)
    cli = median(cli_times)
    ratio = cli / median(floor_times)
    top = sorted({m.split(".")[0] for m in stack})
    return [
        Row(
            LATENCY,
            f"{ratio:.2f}x ({ms(cli)})",
            f"`python -c pass` {ms(median(floor_times))}",
            LATENCY_TARGET,
            ratio <= MAX_RATIO,
        ),
        Row(
            IMPORTS,
            "none" if not stack else f"{len(stack)} modules of {', '.join(top)}",
            "`python -X importtime -m bridge status --json`",
            IMPORTS_TARGET,
            not stack,
        ),
    ]


FIGURE = Figure(
    key="cli",
    title="CLI latency",
    rows=((LATENCY, LATENCY_TARGET), (IMPORTS, IMPORTS_TARGET)),
    how="wall time of `python -m bridge status --json` (a new interpreter each time, as a "
    "tool calls it) against a running daemon, median of the runs, interleaved with "
    "`python -c pass` as the interpreter's own floor. The imports are read from "
    "`python -X importtime -m bridge status --json`: no aiohttp or pydantic module may appear.",
    run=run,
)
