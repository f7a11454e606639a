"""How much each figure measures: the full run, or the smoke run CI uses to check the code runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Iteration counts and durations for one run of the suite."""

    quick: bool
    cold_starts: int  # per side (daemon, floor), after one warm-up each
    cli_runs: int  # per side (status --json, python -c pass)
    wrk_seconds: int
    wrk_repeats: int  # per side, interleaved
    forward_calls_c1: int
    forward_calls_c32: int
    end_to_end_runs: int
    registrations: int
    memory_logins: int
    idle_seconds: float


FULL = Budget(
    quick=False,
    cold_starts=21,
    cli_runs=25,
    wrk_seconds=5,
    wrk_repeats=5,
    forward_calls_c1=1500,
    forward_calls_c32=6400,
    end_to_end_runs=400,
    registrations=10_000,
    memory_logins=10_000,
    idle_seconds=30.0,
)

# Smoke mode: every code path runs once or a few times; the figures mean nothing.
QUICK = Budget(
    quick=True,
    cold_starts=2,
    cli_runs=3,
    wrk_seconds=1,
    wrk_repeats=1,
    forward_calls_c1=20,
    forward_calls_c32=64,
    end_to_end_runs=10,
    registrations=200,
    memory_logins=500,
    idle_seconds=2.0,
)
