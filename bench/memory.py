"""Memory: the idle daemon's RSS, and what 10,000 pending logins add to it."""

from __future__ import annotations

import asyncio
import secrets

from bench.budget import Budget
from bench.control import control_session, register_many
from bench.figure import Figure
from bench.processes import running_daemon
from bench.procfs import rss_bytes
from bench.report import Row
from bench.stats import mib

IDLE = "memory, idle RSS"
IDLE_TARGET = "<= 45 MiB"
MAX_IDLE = 45 << 20
PENDING = "memory, +10k pending"
PENDING_TARGET = "<= +10 MiB"
MAX_PENDING = 10 << 20
# Lets start-up's last allocations and the first GC pass settle before reading.
SETTLE_SECONDS = 0.5


async def measure(budget: Budget) -> tuple[int, int]:
    run = secrets.token_hex(4)
    with running_daemon({"OAUTH_BRIDGE_PENDING_LIMIT": "20000"}) as (daemon, box):
        await asyncio.sleep(SETTLE_SECONDS)
        idle = rss_bytes(daemon.pid)
        async with control_session(box.control_socket) as control:
            states = [f"m-{run}-{i}" for i in range(budget.memory_logins)]
            await register_many(control, states)
        await asyncio.sleep(SETTLE_SECONDS)
        loaded = rss_bytes(daemon.pid)
    return idle, loaded


def run(budget: Budget) -> list[Row]:
    idle, loaded = asyncio.run(measure(budget))
    added = loaded - idle
    return [
        Row(IDLE, mib(idle), "VmRSS right after start-up", IDLE_TARGET, idle <= MAX_IDLE),
        Row(
            PENDING,
            f"+{mib(added)}",
            f"{budget.memory_logins:,} logins registered, VmRSS {mib(loaded)}",
            PENDING_TARGET,
            added <= MAX_PENDING * budget.memory_logins / 10_000,
        ),
    ]


FIGURE = Figure(
    key="memory",
    title="memory",
    rows=((IDLE, IDLE_TARGET), (PENDING, PENDING_TARGET)),
    how="VmRSS from `/proc/PID/status` of a daemon started with "
    "`OAUTH_BRIDGE_PENDING_LIMIT=20000`, read once it is ready (plus "
    f"{SETTLE_SECONDS} s), then again after 10,000 logins registered over the control socket.",
    run=run,
)
