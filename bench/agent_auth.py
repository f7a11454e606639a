"""Agent Auth's start: ``POST /v1/logins`` with scopes, against the same call made directly.

The daemon's part of a login it starts is everything around the control plane's
``authenticate``: reading and validating the request, the state taken from the URL,
the registration, and the wait endpoint's long-poll set going. The floor is the same
``POST /v2/auth/authenticate`` sent straight to the double by the same kind of client.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.budget import Budget
from bench.control import CONTROL, control_session
from bench.figure import Figure
from bench.flow import FORWARD_HEADERS, bridge_to_double
from bench.report import Row
from bench.stats import median, ms

NAME = "Agent Auth start p50"
TARGET = "<= 2 ms added"
MAX_ADDED = 0.002
BODY = {"provider_id": "github", "scopes": ["repo"], "ttl_seconds": 60}


async def through_daemon(control: aiohttp.ClientSession) -> float:
    started = time.perf_counter()
    async with control.post(f"{CONTROL}/v1/logins", json=BODY) as response:
        await response.read()
        if response.status != 201:
            raise RuntimeError(
                f"POST /v1/logins answered {response.status}: {await response.text()}"
            )
    return time.perf_counter() - started


async def direct(session: aiohttp.ClientSession, url: str) -> float:
    body = {"provider": "github", "scopes": ["repo"], "redirect_uri": "http://127.0.0.1:1/x"}
    started = time.perf_counter()
    async with session.post(
        f"{url}/v2/auth/authenticate", json=body, headers=FORWARD_HEADERS
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"authenticate answered {response.status}")
    return time.perf_counter() - started


async def measure(budget: Budget) -> tuple[float, float]:
    calls = budget.end_to_end_runs
    with bridge_to_double(pending_limit=calls * 3) as (_, box, double_url):
        async with control_session(box.control_socket) as control, aiohttp.ClientSession() as s:
            for _ in range(10):  # warm-up: connections, caches
                await through_daemon(control)
                await direct(s, double_url)
            via: list[float] = []
            floor: list[float] = []
            for _ in range(calls):  # alternating, so both sides see the same machine
                via.append(await through_daemon(control))
                floor.append(await direct(s, double_url))
    return median(via), median(floor)


def run(budget: Budget) -> list[Row]:
    via, floor = asyncio.run(measure(budget))
    added = via - floor
    return [
        Row(
            NAME,
            f"+{ms(added)}",
            f"direct {ms(floor)}, via daemon {ms(via)}",
            TARGET,
            added <= MAX_ADDED,
        )
    ]


FIGURE = Figure(
    key="agent-auth",
    title="Agent Auth start",
    rows=((NAME, TARGET),),
    how="`POST /v1/logins` with `scopes` over the control socket (the daemon calls the "
    "double's `authenticate`, takes the state from the URL, registers the login and starts "
    "its long-poll on `wait`), against the same `authenticate` sent straight to the double "
    "by an aiohttp client, alternating, after a warm-up; the figure is median(via daemon) - "
    "median(direct). The double runs in its own process.",
    run=run,
)
