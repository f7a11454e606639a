"""Registrations: ``POST /v1/logins`` over the Unix socket, sustained, with keep-alive and concurrency."""

from __future__ import annotations

import asyncio
import secrets

from bench.budget import Budget
from bench.control import control_session, register_many
from bench.figure import Figure
from bench.processes import running_daemon
from bench.report import Row

NAME = "registrations"
TARGET = ">= 2,000 /s"
MIN_RATE = 2000.0
CONCURRENCY = 16
WARM_UP = 200


async def measure(budget: Budget) -> float:
    """Return registrations per second."""
    run = secrets.token_hex(4)
    env = {"OAUTH_BRIDGE_PENDING_LIMIT": str(budget.registrations + WARM_UP + 100)}
    with running_daemon(env) as (_, box):
        async with control_session(box.control_socket) as control:
            await register_many(control, [f"w-{run}-{i}" for i in range(WARM_UP)])
            states = [f"r-{run}-{i}" for i in range(budget.registrations)]
            _, elapsed = await register_many(control, states, concurrency=CONCURRENCY)
    return budget.registrations / elapsed


def run(budget: Budget) -> list[Row]:
    rate = asyncio.run(measure(budget))
    return [
        Row(
            NAME,
            f"{rate:,.0f} /s",
            f"{budget.registrations:,} logins, {CONCURRENCY} concurrent",
            TARGET,
            rate >= MIN_RATE,
        )
    ]


FIGURE = Figure(
    key="registrations",
    title=NAME,
    rows=((NAME, TARGET),),
    how=f"`POST /v1/logins` with a new state each, from one aiohttp client "
    f"(`UnixConnector`, keep-alive) with {CONCURRENCY} requests in flight, after "
    f"{WARM_UP} warm-up registrations; logins per second of wall time. The pending "
    "limit is raised to fit (`OAUTH_BRIDGE_PENDING_LIMIT`).",
    run=run,
)
