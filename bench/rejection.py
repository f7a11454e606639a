"""Rejection throughput: wrk against a callback with an unknown state, server and load on separate cores."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess

from bench.budget import Budget
from bench.figure import Figure
from bench.processes import LOAD_CPU, SERVER_CPU, Server, running_daemon, running_floor, two_cores
from bench.report import Row
from bench.stats import median

NAME = "rejection throughput"
TARGET = ">= 0.75x floor"
MIN_RATIO = 0.75
CONNECTIONS = 50
PATH = "/callback/github?code=x&state=unknown"


def check_rejects(server: Server) -> None:
    """Make sure the load is what we think: wrk counts any answer, a 421 or a 500 included."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", PATH)
        status = connection.getresponse().status
    finally:
        connection.close()
    if status != 303:
        raise RuntimeError(f"{server.url}{PATH} answered {status}, not 303")


def wrk(server: Server, seconds: int) -> float:
    """Return wrk's requests per second: one thread, keep-alive, on the load core when there is one."""
    pin = ["taskset", "-c", str(LOAD_CPU)] if two_cores() else []
    argv = [*pin, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", f"{server.url}{PATH}"]
    output = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    if "Socket errors" in output or "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    return float(found.group(1))


def run(budget: Budget) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Row(NAME, "not measured: wrk is not on PATH", "", TARGET, None)]
    cpu = SERVER_CPU if two_cores() else None
    with running_daemon(cpu=cpu) as (daemon, _), running_floor(cpu=cpu) as floor:
        check_rejects(daemon)
        check_rejects(floor)
        if not budget.quick:
            wrk(daemon, 1)  # warm-up: first connections, allocator growth
            wrk(floor, 1)
        daemon_rates: list[float] = []
        floor_rates: list[float] = []
        for _ in range(budget.wrk_repeats):
            # Interleaved: noise from the shared host lands on both sides alike.
            daemon_rates.append(wrk(daemon, budget.wrk_seconds))
            floor_rates.append(wrk(floor, budget.wrk_seconds))
    ratio = median(daemon_rates) / median(floor_rates)
    return [
        Row(
            NAME,
            f"{median(daemon_rates):,.0f} req/s ({ratio:.2f}x floor)",
            f"bare aiohttp handler {median(floor_rates):,.0f} req/s",
            TARGET,
            ratio >= MIN_RATIO,
        )
    ]


FIGURE = Figure(
    key="rejection",
    title=NAME,
    rows=((NAME, TARGET),),
    how=f"`wrk -t1 -c{CONNECTIONS}` (keep-alive) on `GET {PATH}` (303 to the `unknown` "
    f"page; Host `127.0.0.1:PORT`, wrk's default), the server pinned to core {SERVER_CPU} "
    f"and wrk to core {LOAD_CPU}; median of interleaved runs after a warm-up. The daemon "
    "runs as shipped (info-level access log to a file). The floor is the bare aiohttp "
    "handler in `bench/floor_server.py`: it parses the same query and raises the same 303.",
    run=run,
)
