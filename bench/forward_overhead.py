"""Forward overhead: a callback through the daemon to the double, minus the same POST sent straight."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence

from bench.budget import Budget
from bench.control import browser_session, control_session, fan_out, login, register_many
from bench.figure import Figure
from bench.flow import FORWARD_HEADERS, bridge_to_double
from bench.processes import Sandbox, Server
from bench.report import Row
from bench.stats import ms, percentile

P50_TARGET = "<= 1 ms added"
P99_TARGET = "<= 5 ms added"
MAX_P50 = 0.001
MAX_P99 = 0.005
CONCURRENCIES = (1, 32)
# Rounds alternate direct and through-the-daemon batches, so drift hits both.
ROUNDS = 4
WARM_UP = 32


def row_names(concurrency: int) -> tuple[str, str]:
    return (f"forward overhead p50, c={concurrency}", f"forward overhead p99, c={concurrency}")


async def measure(
    daemon: Server, box: Sandbox, double_url: str, *, concurrency: int, calls: int
) -> tuple[list[float], list[float]]:
    """Return (direct, through the daemon) latencies in seconds."""
    run = secrets.token_hex(4)
    states = [f"fwd-{run}-{i}" for i in range(calls + WARM_UP)]
    async with control_session(box.control_socket) as control:
        ids, _ = await register_many(control, states)
        async with browser_session() as browser, browser_session() as direct:

            async def through_daemon(state: str) -> float:
                started = time.perf_counter()
                async with browser.get(
                    f"{daemon.url}/callback/github?code=c-{state}&state={state}",
                    allow_redirects=False,
                ) as response:
                    await response.read()
                elapsed = time.perf_counter() - started
                # The daemon answers its 303 once the forward is done: the callback's latency.
                if response.status != 303:
                    raise RuntimeError(f"callback answered {response.status}")
                return elapsed

            async def straight(state: str) -> float:
                started = time.perf_counter()
                async with direct.post(
                    f"{double_url}/v2/auth/callback/github",
                    json={"code": f"c-{state}", "state": state},
                    headers=FORWARD_HEADERS,
                ) as response:
                    await response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise RuntimeError(f"the double answered {response.status}")
                return elapsed

            warm, timed = states[:WARM_UP], states[WARM_UP:]
            await fan_out(straight, warm, concurrency=concurrency)
            await fan_out(through_daemon, warm, concurrency=concurrency)
            direct_times: list[float] = []
            daemon_times: list[float] = []
            for batch in _chunks(timed, ROUNDS):
                direct_times += await fan_out(straight, batch, concurrency=concurrency)
                daemon_times += await fan_out(through_daemon, batch, concurrency=concurrency)
        final = await login(control, ids[states[-1]])
        if final["status"] != "succeeded":
            raise RuntimeError(f"a forwarded login ended {final['status']}: {final['result']}")
    return direct_times, daemon_times


def _chunks(items: Sequence[str], n: int) -> list[Sequence[str]]:
    size = max(1, -(-len(items) // n))
    return [items[i : i + size] for i in range(0, len(items), size)]


def rows_for(concurrency: int, direct: list[float], through: list[float]) -> list[Row]:
    p50_name, p99_name = row_names(concurrency)
    rows = []
    for name, q, target, limit in (
        (p50_name, 50, P50_TARGET, MAX_P50),
        (p99_name, 99, P99_TARGET, MAX_P99),
    ):
        added = percentile(through, q) - percentile(direct, q)
        rows.append(
            Row(
                name,
                f"+{ms(added)}",
                f"direct {ms(percentile(direct, q))}, via daemon {ms(percentile(through, q))}",
                target,
                added <= limit,
            )
        )
    return rows


async def measure_all(budget: Budget) -> list[Row]:
    rows: list[Row] = []
    with bridge_to_double() as (daemon, box, double_url):
        for concurrency, calls in zip(
            CONCURRENCIES, (budget.forward_calls_c1, budget.forward_calls_c32), strict=True
        ):
            direct, through = await measure(
                daemon, box, double_url, concurrency=concurrency, calls=calls
            )
            rows += rows_for(concurrency, direct, through)
    return rows


def run(budget: Budget) -> list[Row]:
    return asyncio.run(measure_all(budget))


FIGURE = Figure(
    key="forward",
    title="forward overhead",
    rows=tuple(
        (name, target)
        for c in CONCURRENCIES
        for name, target in zip(row_names(c), (P50_TARGET, P99_TARGET), strict=True)
    ),
    how="the control-plane double (`tests/control_plane_double.py`) runs in its own process; "
    "every callback has its own state, registered first over the control socket. A "
    "callback's latency is `GET /callback/github?code&state` until its 303 (the daemon "
    "answers once the forward is done); the floor is the same `POST /v2/auth/callback/github` "
    "(same body and headers) sent straight to the double by the same aiohttp client. Both "
    "run at concurrency 1 and 32 in alternating batches after a warm-up; the figure is "
    "percentile(via daemon) - percentile(direct).",
    run=run,
)
