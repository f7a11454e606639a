"""Shutdown: waiters answer at once, no forward starts, a cut-off forward still gets a page."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_flow import meta_status


def stopping_event(running: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Return an event set the moment the daemon starts shutting down."""
    stopping = asyncio.Event()
    logins = running.services.logins
    begin_shutdown = logins.begin_shutdown

    def spy() -> None:
        begin_shutdown()
        stopping.set()

    monkeypatch.setattr(logins, "begin_shutdown", spy)
    return stopping


async def test_a_long_poll_answers_at_once_when_the_daemon_stops(
    bridge: RunningDaemon,
) -> None:
    login = await bridge.register("github", "st-lp")
    waiter = asyncio.create_task(bridge.login(login["id"], wait=300))
    await asyncio.sleep(0)

    bridge.stop.set()

    answered = await asyncio.wait_for(waiter, 5)
    assert answered["status"] == "pending"
    await asyncio.wait_for(bridge.task, 10)


async def test_no_forward_starts_once_stopping_and_the_login_stays_pending(
    start_daemon: Any, control_plane: ControlPlaneDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    running: RunningDaemon = await start_daemon(OAUTH_BRIDGE_SHUTDOWN_GRACE_SECONDS="30")
    await running.register("github", "st-first")
    late = await running.register("github", "st-late")
    async with running.browser.get(f"{running.url}/healthz") as warm:
        assert warm.status == 200  # an idle keep-alive connection, as a browser keeps
    stopping = stopping_event(running, monkeypatch)
    control_plane.script.hang = True
    other_tab = aiohttp.ClientSession()
    first = asyncio.create_task(
        other_tab.get(f"{running.url}/callback/github?code=c&state=st-first")
    )
    await asyncio.wait_for(control_plane.called.wait(), 5)

    running.stop.set()
    await asyncio.wait_for(stopping.wait(), 5)
    status, page, _ = await running.hit("code=c&state=st-late")  # over the idle connection
    control_plane.release.set()
    (await first).close()
    await other_tab.close()

    assert (status, meta_status(page)) == (503, "pending")
    assert "Reload this page" in page
    assert [c.body["state"] for c in control_plane.calls] == ["st-first"]
    assert running.services.logins.get(late["id"]).status.value == "pending"  # type: ignore[union-attr]


async def test_a_forward_cut_off_by_shutdown_still_answers_the_browser(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    running: RunningDaemon = await start_daemon(OAUTH_BRIDGE_SHUTDOWN_GRACE_SECONDS="0.2")
    login = await running.register("github", "st-cut")
    control_plane.script.hang = True
    hit = asyncio.create_task(running.hit("code=c&state=st-cut"))
    await asyncio.wait_for(control_plane.called.wait(), 5)

    running.stop.set()
    status, page, _ = await asyncio.wait_for(hit, 10)

    assert (status, meta_status(page)) == (200, "failed")
    assert "oauth-bridge stopped while it was finishing" in page
    final = running.services.logins.get(login["id"])
    assert final is not None
    assert final.result is not None
    assert final.result["error"] == "interrupted"
