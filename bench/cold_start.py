"""Daemon cold start: exec of ``serve --port 0`` until daemon.json exists and its port accepts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.budget import Budget
from bench.figure import Figure
from bench.processes import daemon_argv, floor_argv, sandbox, start
from bench.report import Row
from bench.stats import median, ms

NAME = "daemon cold start"
TARGET = "<= 1.25x floor"
MAX_RATIO = 1.25


def time_one(argv_for: Callable[[Path], list[str]]) -> float:
    """Time one start in a fresh sandbox: an empty state dir, as on first use."""
    with sandbox() as box:
        started = time.perf_counter()
        server = start(
            argv_for(box.daemon_json), env=box.environ(), ready_file=box.daemon_json, log=box.log
        )
        elapsed = time.perf_counter() - started
        server.stop()
    return elapsed


def daemon(_: Path) -> list[str]:
    return daemon_argv()


def run(budget: Budget) -> list[Row]:
    # One warm-up each: the first start may compile bytecode, which installs do once.
    time_one(daemon)
    time_one(floor_argv)
    daemon_times: list[float] = []
    floor_times: list[float] = []
    for _ in range(budget.cold_starts):
        # Interleaved, so a burst of noise on the shared cores hits both sides alike.
        daemon_times.append(time_one(daemon))
        floor_times.append(time_one(floor_argv))
    ratio = median(daemon_times) / median(floor_times)
    return [
        Row(
            NAME,
            f"{ms(median(daemon_times))} ({ratio:.2f}x floor)",
            f"bare aiohttp server {ms(median(floor_times))}",
            TARGET,
            ratio <= MAX_RATIO,
        )
    ]


FIGURE = Figure(
    key="cold-start",
    title=NAME,
    rows=((NAME, TARGET),),
    how="wall time from the exec of `python -m bridge serve --port 0` (fresh runtime and "
    "state dirs, empty config file) until `daemon.json` names its pid and its port accepts a "
    "TCP connection; median of the runs, after one warm-up. The floor is "
    "`bench/floor_server.py`, a bare aiohttp server that writes the same kind of file once "
    "it accepts, started the same way, interleaved with the daemon's runs.",
    run=run,
)
