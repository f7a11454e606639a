"""Every figure, in the order the table shows them."""

from __future__ import annotations

from bench import (
    agent_auth,
    cli_latency,
    cold_start,
    end_to_end,
    forward_overhead,
    idle_cost,
    memory,
    registrations,
    rejection,
    time_to_browser,
)
from bench.figure import Figure

FIGURES: tuple[Figure, ...] = (
    cold_start.FIGURE,
    cli_latency.FIGURE,
    rejection.FIGURE,
    forward_overhead.FIGURE,
    end_to_end.FIGURE,
    agent_auth.FIGURE,
    time_to_browser.FIGURE,
    registrations.FIGURE,
    memory.FIGURE,
    idle_cost.FIGURE,
)
