"""One state is forwarded at most once, whatever arrives concurrently."""

from __future__ import annotations

import asyncio

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_flow import meta_status


async def test_fifty_simultaneous_hits_of_one_callback_produce_exactly_one_forward(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-50")
    control_plane.script.hang = True  # hold the forward so that all 50 arrive during it
    hits = [asyncio.create_task(bridge.hit(f"code=c{i}&state=st-50")) for i in range(50)]
    await asyncio.wait_for(control_plane.called.wait(), 10)

    control_plane.release.set()
    results = await asyncio.gather(*hits)

    assert len(control_plane.calls) == 1
    assert {"succeeded"} == {meta_status(page) for _, page, _ in results}
    assert (await bridge.login(login["id"]))["status"] == "succeeded"


async def test_a_paste_racing_the_browser_forwards_once(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-race")
    url = f"{bridge.url}/callback/github?code=c&state=st-race"

    async def paste() -> int:
        async with bridge.control.post("http://bridge/v1/callbacks", json={"url": url}) as r:
            return r.status

    results = await asyncio.gather(
        *[paste() for _ in range(10)], *[bridge.hit("code=c&state=st-race") for _ in range(10)]
    )

    assert len(control_plane.calls) == 1
    assert all(r == 200 for r in results[:10])


async def test_cancel_racing_the_callback_leaves_one_consistent_outcome(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-cr")

    async def cancel() -> int:
        async with bridge.control.delete(f"http://bridge/v1/logins/{login['id']}") as r:
            return r.status

    (_, page, _), cancelled = await asyncio.gather(bridge.hit("code=c&state=st-cr"), cancel())

    final = await bridge.login(login["id"])
    assert meta_status(page) == final["status"]
    assert (cancelled == 200) == (final["status"] == "cancelled")
    assert len(control_plane.calls) == (0 if final["status"] == "cancelled" else 1)
