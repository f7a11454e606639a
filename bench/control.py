"""Talk to the daemon as tools and browsers do: the control API over its Unix socket, callbacks over TCP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")
CONTROL = "http://bridge"


def control_session(socket_path: Path) -> aiohttp.ClientSession:
    # limit=0: as many keep-alive connections as callers run concurrently.
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket_path), limit=0))


def browser_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def register(session: aiohttp.ClientSession, state: str, provider_id: str = "github") -> str:
    """Register ``state`` and return the login's id."""
    async with session.post(
        f"{CONTROL}/v1/logins", json={"provider_id": provider_id, "state": state}
    ) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 201:
            raise RuntimeError(f"POST /v1/logins answered {response.status}: {body}")
        return str(body["id"])


async def login(session: aiohttp.ClientSession, login_id: str, wait: float | None = None) -> Any:
    query = "" if wait is None else f"?wait={wait}"
    async with session.get(f"{CONTROL}/v1/logins/{login_id}{query}") as response:
        response.raise_for_status()
        return await response.json()


async def fan_out(
    work: Callable[[T], Awaitable[float]], items: Sequence[T], *, concurrency: int
) -> list[float]:
    """Run ``work`` over ``items`` with ``concurrency`` workers; return what each call returned."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    results: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            results.append(await work(queue.get_nowait()))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def register_many(
    session: aiohttp.ClientSession, states: Sequence[str], *, concurrency: int = 16
) -> tuple[dict[str, str], float]:
    """Register every state; return {state: login id} and the wall time it took."""
    ids: dict[str, str] = {}

    async def one(state: str) -> float:
        ids[state] = await register(session, state)
        return 0.0

    started = time.perf_counter()
    await fan_out(one, states, concurrency=concurrency)
    return ids, time.perf_counter() - started
