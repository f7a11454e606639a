"""Idle cost: the CPU an idle daemon spends while nothing happens."""

from __future__ import annotations

import time

from bench.budget import Budget
from bench.figure import Figure
from bench.processes import running_daemon
from bench.procfs import context_switches, cpu_seconds, run_seconds
from bench.report import Row

NAME = "idle cost"
TARGET = "<= 10 ms / 30 s"
MAX_SECONDS_PER_30S = 0.010
SETTLE_SECONDS = 1.0


def run(budget: Budget) -> list[Row]:
    with running_daemon() as (daemon, _):
        time.sleep(SETTLE_SECONDS)  # start-up's tail is not idleness
        cpu, exact, wakes = (
            cpu_seconds(daemon.pid),
            run_seconds(daemon.pid),
            context_switches(daemon.pid),
        )
        time.sleep(budget.idle_seconds)
        cpu = cpu_seconds(daemon.pid) - cpu
        exact = run_seconds(daemon.pid) - exact
        wakes = context_switches(daemon.pid) - wakes
    per_30s = cpu * 30 / budget.idle_seconds
    return [
        Row(
            NAME,
            f"{cpu * 1000:.0f} ms / {budget.idle_seconds:.0f} s",
            f"schedstat {exact * 1000:.2f} ms, {wakes} wake-ups",
            TARGET,
            per_30s <= MAX_SECONDS_PER_30S,
        )
    ]


FIGURE = Figure(
    key="idle",
    title=NAME,
    rows=((NAME, TARGET),),
    how="utime + stime (`/proc/PID/stat`, 10 ms ticks) of a ready daemon with no login and "
    f"no connection, over 30 s (`--quick`: 2 s), {SETTLE_SECONDS:.0f} s after it became "
    "ready. For a finer view the reference column gives the run time summed over its threads "
    "from `/proc/PID/task/*/schedstat` (ns) and its voluntary context switches (wake-ups).",
    run=run,
)
