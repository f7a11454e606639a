"""The client's pure core alone: the wait and the reach check, on a fake clock, no socket."""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from typing import Any

from bridge.client.flow import Call, Fallback, Open, Pause, Revive, Step, Waited, wait_flow
from bridge.client.transport import Answer

NOW = 1_000_000.0
HOSTED = Call("POST", "/v1/logins", {"provider_id": "github", "callback": "hosted"}, 90)


def login(login_id: str = "L1", **fields: Any) -> dict[str, Any]:
    return {
        "id": login_id,
        "provider_id": "github",
        "status": "pending",
        "callback": "loopback",
        "browser_seen": False,
        "expires_at": "1970-01-12T13:56:40.000Z",  # NOW + 600 s
        **fields,
    }


class Clock:
    """A clock that moves only when a long-poll or a pause says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(
    flow: Generator[Step, Any, Waited],
    clock: Clock,
    answer: Callable[[Call], Answer],
) -> tuple[Waited, list[Step]]:
    """Play the daemon and the browser for ``flow``; a long-poll takes its whole slice."""
    steps: list[Step] = []
    try:
        step = next(flow)
        while True:
            steps.append(step)
            if isinstance(step, Pause):
                clock.now += step.seconds
                step = flow.send(None)
            elif isinstance(step, Open):
                step = flow.send(True)
            elif isinstance(step, Revive):
                step = flow.send(None)
            else:
                waited = re.search(r"wait=([\d.]+)", step.path)
                reply = answer(step)
                if waited and reply.body.get("status") in ("pending", "forwarding"):
                    clock.now += float(waited.group(1))
                step = flow.send(reply)
    except StopIteration as done:
        return done.value, steps


def test_a_browser_that_comes_in_time_keeps_the_loopback_login() -> None:
    clock = Clock()
    seen = [True, True]  # the browser came during the first long-poll

    def daemon(call: Call) -> Answer:
        if seen:
            return Answer(200, login(browser_seen=seen.pop(0)))
        return Answer(200, login(status="succeeded", browser_seen=True))

    flow = wait_flow(
        login(),
        secret="s1",
        timeout=None,
        fallback=Fallback(deadline=20.0, hosted=HOSTED),
        clock=clock,
        wall=lambda: NOW,
    )
    waited, steps = drive(flow, clock, daemon)

    assert waited.login["status"] == "succeeded"
    assert not waited.replaced
    assert all(isinstance(s, Call) and s.method == "GET" for s in steps)
    # The first long-poll is cut at the reach deadline, so the check is not late.
    assert "wait=20.000" in steps[0].path  # type: ignore[union-attr]
    assert steps[0].headers == {"X-Login-Secret": "s1"}  # type: ignore[union-attr]


def test_no_browser_by_the_deadline_switches_to_a_hosted_login() -> None:
    clock = Clock()
    calls: list[Call] = []

    def daemon(call: Call) -> Answer:
        calls.append(call)
        if call.method == "DELETE":
            return Answer(200, login(status="cancelled"))
        if call.method == "POST":
            hosted = login(
                "L2", callback="hosted", secret="s2", open_url="https://provider.invalid/a?state=x"
            )
            return Answer(201, hosted)
        if "/L2" in call.path:
            return Answer(200, login("L2", status="succeeded", callback="hosted"))
        return Answer(200, login())

    heard: list[Waited] = []
    flow = wait_flow(
        login(),
        secret="s1",
        timeout=None,
        fallback=Fallback(deadline=20.0, hosted=HOSTED),
        on_replaced=heard.append,
        clock=clock,
        wall=lambda: NOW,
    )
    waited, steps = drive(flow, clock, daemon)

    assert [(c.method, c.path.split("?")[0]) for c in calls] == [
        ("GET", "/v1/logins/L1"),
        ("DELETE", "/v1/logins/L1"),
        ("POST", "/v1/logins"),
        ("GET", "/v1/logins/L2"),
    ]
    assert calls[1].headers == {"X-Login-Secret": "s1"}
    assert calls[2] is HOSTED
    assert calls[3].headers == {"X-Login-Secret": "s2"}
    assert Open("https://provider.invalid/a?state=x") in steps
    assert (waited.replaced, waited.secret, waited.browser_opened) == (True, "s2", True)
    assert waited.login["id"] == "L2"
    assert heard == [waited]
    assert clock.now == 20.0  # no time lost beyond the reach timeout


def test_a_login_that_moved_on_meanwhile_is_not_replaced() -> None:
    clock = Clock()
    forwarding = login(status="forwarding", browser_seen=True)
    answers = [
        Answer(200, login()),
        Answer(409, {"error": "conflict", "message": "forwarding", "login": forwarding}),
        Answer(200, login(status="succeeded", browser_seen=True)),
    ]
    methods: list[str] = []

    def daemon(call: Call) -> Answer:
        methods.append(call.method)
        return answers.pop(0)

    flow = wait_flow(
        login(),
        timeout=None,
        fallback=Fallback(deadline=5.0, hosted=HOSTED),
        clock=clock,
        wall=lambda: NOW,
    )
    waited, _ = drive(flow, clock, daemon)

    assert methods == ["GET", "DELETE", "GET"]
    assert (waited.replaced, waited.login["status"]) == (False, "succeeded")


def test_without_a_fallback_the_wait_runs_to_its_timeout_and_asks_at_least_once() -> None:
    clock = Clock()

    def daemon(call: Call) -> Answer:
        return Answer(200, login())

    waited, steps = drive(
        wait_flow(login(), timeout=0, clock=clock, wall=lambda: NOW), clock, daemon
    )

    assert waited.login["status"] == "pending"
    assert len(steps) == 1


def test_a_daemon_gone_mid_wait_is_started_again_once() -> None:
    from bridge.errors import DaemonUnavailable

    clock = Clock()
    gone = 8  # answers before the new daemon is up

    def daemon(call: Call) -> Answer:
        nonlocal gone
        if gone:
            gone -= 1
            raise DaemonUnavailable("no daemon")
        return Answer(200, login(status="succeeded"))

    flow = wait_flow(login(), timeout=None, clock=clock, wall=lambda: NOW)
    steps: list[Step] = []
    step = next(flow)
    try:
        while True:
            steps.append(step)
            if isinstance(step, Pause):
                clock.now += step.seconds
                step = flow.send(None)
            elif isinstance(step, Revive):
                step = flow.send(None)
            else:
                assert isinstance(step, Call)
                try:
                    reply = daemon(step)
                except DaemonUnavailable as exc:
                    step = flow.throw(exc)
                    continue
                step = flow.send(reply)
    except StopIteration as done:
        waited: Waited = done.value

    assert waited.login["status"] == "succeeded"
    assert sum(isinstance(s, Revive) for s in steps) == 1
    first = next(i for i, s in enumerate(steps) if isinstance(s, Revive))
    # After a second gone (5 pauses of 0.2 s, or 6 as the float sums fall), not before.
    assert sum(isinstance(s, Pause) for s in steps[:first]) in (5, 6)
