"""The browser side's rules: each test breaks when its rule does."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_flow import meta_status

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:{port}",
        "127.0.0.1:1",
        "localhost",
        "",
        "127.0.0.1.nip.io:{port}",
        "[::2]:{port}",
    ],
)
async def test_a_foreign_host_header_gets_421_and_consumes_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, host: str
) -> None:
    login = await bridge.register("github", "st-h")

    async with bridge.browser.get(
        f"{bridge.url}/callback/github?code=c&state=st-h",
        headers={"Host": host.format(port=bridge.port)},
        allow_redirects=False,
    ) as response:
        assert response.status == 421

    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
async def test_own_host_names_are_accepted(bridge: RunningDaemon, host: str) -> None:
    async with bridge.browser.get(
        f"{bridge.url}/healthz", headers={"Host": host.format(port=bridge.port)}
    ) as response:
        assert response.status == 200


@pytest.mark.parametrize("name", ["code", "state", "iss", "error"])
async def test_a_duplicated_parameter_gets_400_and_consumes_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, name: str
) -> None:
    login = await bridge.register("github", "st-d")
    query = {"code": "c", "state": "st-d", "iss": "https://i", "error": "access_denied"}
    parts = [f"{k}={v}" for k, v in query.items() if k != "error" or name == "error"]
    parts.append(f"{name}={query[name]}")

    status, page, response = await bridge.hit("&".join(parts))

    assert (status, meta_status(page)) == (400, "invalid")
    assert f"&#x27;{name}&#x27; appears more than once" in page
    assert response.url.query.get("code") is None
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("code=c", "no &#x27;state&#x27;"),
        ("state=st-m", "neither a &#x27;code&#x27;"),
        ("code=&state=st-m", "neither a &#x27;code&#x27;"),
        ("", "no &#x27;state&#x27;"),
    ],
)
async def test_missing_code_or_state_gets_a_clear_400_page(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, query: str, why: str
) -> None:
    login = await bridge.register("github", "st-m")

    status, page, _ = await bridge.hit(query)

    assert (status, meta_status(page)) == (400, "invalid")
    assert why in page
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_an_unknown_state_gets_404_and_nothing_is_forwarded(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    status, page, response = await bridge.hit("code=c&state=never-registered")

    assert (status, meta_status(page)) == (404, "unknown")
    assert "No login is waiting" in page
    assert "code" not in response.url.query
    assert control_plane.calls == []


async def test_an_expired_state_says_so_and_nothing_is_forwarded(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-exp", ttl_seconds=1)
    expired = await bridge.login(login["id"], wait=5)  # the expiry timer wakes the waiter
    assert expired["status"] == "expired"

    status, page, _ = await bridge.hit("code=c&state=st-exp")

    assert (status, meta_status(page)) == (200, "expired")
    assert "expired" in page
    assert control_plane.calls == []


async def test_a_state_registered_for_another_provider_is_rejected_and_stays_pending(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-p")

    status, page, _ = await bridge.hit("code=c&state=st-p", provider_id="google")

    assert (status, meta_status(page)) == (404, "unknown")
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_access_denied_makes_the_login_denied_and_is_not_forwarded(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-den")

    status, page, _ = await bridge.hit(
        "error=access_denied&error_description=%3Cb%3Enope%3C%2Fb%3E&state=st-den"
    )

    assert (status, meta_status(page)) == (200, "denied")
    assert "<b>nope</b>" not in page
    assert "&lt;b&gt;nope&lt;/b&gt;" in page
    assert control_plane.calls == []
    denied = await bridge.login(login["id"])
    assert denied["status"] == "denied"
    assert denied["result"] == {"error": "access_denied", "error_description": "<b>nope</b>"}


async def test_another_provider_error_fails_the_login_with_provider_error(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-pe")

    status, page, _ = await bridge.hit("error=server_error&state=st-pe")

    assert (status, meta_status(page)) == (200, "failed")
    assert control_plane.calls == []
    result = (await bridge.login(login["id"]))["result"]
    assert result["error"] == "provider_error"
    assert "server_error" in result["message"]


async def test_a_provider_error_without_a_matching_state_changes_nothing(
    bridge: RunningDaemon,
) -> None:
    login = await bridge.register("github", "st-x")

    status, page, _ = await bridge.hit("error=access_denied&state=other")

    assert (status, meta_status(page)) == (404, "unknown")
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_a_mismatched_iss_fails_the_login_with_issuer_mismatch(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-iss", expected_issuer="https://github.com")

    status, page, _ = await bridge.hit("code=c&state=st-iss&iss=https%3A%2F%2Fevil.example")

    assert (status, meta_status(page)) == (200, "failed")
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["result"]["error"] == "issuer_mismatch"


async def test_a_matching_iss_is_forwarded(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-iss2", expected_issuer="https://github.com")

    status, page, _ = await bridge.hit("code=c&state=st-iss2&iss=https%3A%2F%2Fgithub.com")

    assert (status, meta_status(page)) == (200, "succeeded")
    assert len(control_plane.calls) == 1


async def test_a_missing_iss_fails_only_when_required(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    required = await bridge.register(
        "github", "st-r1", expected_issuer="https://i", require_issuer=True
    )
    optional = await bridge.register("github", "st-r2", expected_issuer="https://i")

    await bridge.hit("code=c&state=st-r1")
    await bridge.hit("code=c&state=st-r2")

    assert (await bridge.login(required["id"]))["result"]["error"] == "issuer_mismatch"
    assert (await bridge.login(optional["id"]))["status"] == "succeeded"
    assert len(control_plane.calls) == 1


async def test_iss_is_not_checked_without_expected_issuer(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-ni")

    await bridge.hit("code=c&state=st-ni&iss=https%3A%2F%2Fanything")

    assert (await bridge.login(login["id"]))["status"] == "succeeded"


async def test_a_repeat_shows_the_same_outcome_and_never_forwards_again(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-rep")

    first = await bridge.hit("code=c1&state=st-rep")
    again = await bridge.hit("code=c2&state=st-rep")
    reload_ = await bridge.browser.get(first[2].url)

    assert len(control_plane.calls) == 1
    assert meta_status(first[1]) == meta_status(again[1]) == "succeeded"
    assert (reload_.status, meta_status(await reload_.text())) == (200, "succeeded")


async def test_a_repeat_while_forwarding_waits_for_the_outcome(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-w")
    control_plane.script.hang = True
    first = asyncio.create_task(bridge.hit("code=c1&state=st-w"))
    await asyncio.wait_for(control_plane.called.wait(), 5)
    second = asyncio.create_task(bridge.hit("code=c1&state=st-w"))
    await asyncio.sleep(0)
    assert not second.done()

    control_plane.release.set()
    results = await asyncio.gather(first, second)

    assert [meta_status(page) for _, page, _ in results] == ["succeeded", "succeeded"]
    assert len(control_plane.calls) == 1


async def test_a_closed_tab_does_not_cancel_the_forward(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-tab")
    control_plane.script.hang = True
    hit = asyncio.create_task(bridge.hit("code=c&state=st-tab"))
    await asyncio.wait_for(control_plane.called.wait(), 5)
    hit.cancel()  # the browser goes away mid-forward

    control_plane.release.set()
    done = await bridge.login(login["id"], wait=10)

    assert done["status"] == "succeeded"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/favicon.ico", {}),
        ("HEAD", "/callback/github?code=c&state=st-s", {}),
        ("OPTIONS", "/callback/github?code=c&state=st-s", {}),
        ("GET", "/callback/github?code=c&state=st-s", {"Sec-Purpose": "prefetch"}),
        ("GET", "/callback/github?code=c&state=st-s", {"Purpose": "prefetch"}),
        ("GET", "/callback/github?code=c&state=st-s", {"Sec-Purpose": "prefetch;prerender"}),
        ("PUT", "/callback/github?code=c&state=st-s", {}),
        ("GET", "/result/-/unknown", {}),
        ("GET", "/robots.txt", {}),
    ],
)
async def test_stray_requests_consume_nothing(
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    login = await bridge.register("github", "st-s")

    async with bridge.browser.request(
        method, bridge.url + path, headers=headers, allow_redirects=False
    ) as response:
        assert response.status != 303
        assert response.status >= 400 or method == "GET"
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value

    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_every_page_carries_the_security_headers(bridge: RunningDaemon) -> None:
    await bridge.register("github", "st-sec")
    _status, _page, response = await bridge.hit("code=c&state=st-sec")

    for r in [*response.history, response]:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers[name] == value
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "style-src 'unsafe-inline'" in csp
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


async def test_result_pages_are_self_contained(bridge: RunningDaemon) -> None:
    await bridge.register("github", "st-self")
    _, page, _ = await bridge.hit("code=c&state=st-self")

    assert not re.search(r"(src|href)\s*=", page)
    assert "url(" not in page
    assert "@import" not in page
    assert "<script" not in page


async def test_a_result_page_for_an_unknown_login_is_404(bridge: RunningDaemon) -> None:
    async with bridge.browser.get(f"{bridge.url}/result/no-such-login") as response:
        assert (response.status, meta_status(await response.text())) == (404, "unknown")


async def test_the_tcp_port_never_serves_the_control_api(bridge: RunningDaemon) -> None:
    async with bridge.browser.post(
        f"{bridge.url}/v1/logins", json={"provider_id": "github", "state": "x"}
    ) as response:
        assert response.status in (404, 405)
    async with bridge.browser.get(f"{bridge.url}/v1/logins") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    "query",
    [
        "code=c&state=st-any&scope=a&scope=b",
        "code=c&state=st-any&error_description=a&error_description=b",
    ],
)
async def test_any_duplicated_parameter_is_invalid(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, query: str
) -> None:
    login = await bridge.register("github", "st-any")

    status, page, _ = await bridge.hit(query)

    assert (status, meta_status(page)) == (400, "invalid")
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"code=c&state=st-bad"),
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="code"',
        ),
        ("application/x-www-form-urlencoded; charset=bogus", b"code=c&state=st-bad"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nbroken"),  # found by the fuzzer
    ],
)
async def test_a_malformed_form_post_is_invalid_and_consumes_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, content_type: str, body: bytes
) -> None:
    login = await bridge.register("github", "st-bad")

    async with bridge.browser.post(
        f"{bridge.url}/callback/github", data=body, headers={"Content-Type": content_type}
    ) as response:
        page = await response.text()
        status = response.status

    assert (status, meta_status(page)) == (400, "invalid")
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_the_expiry_timer_wakes_a_waiter_at_the_ttl(bridge: RunningDaemon) -> None:
    login = await bridge.register("github", "st-ttl", ttl_seconds=1)

    # Without the timer the long-poll would run its full 30 s before noticing.
    expired = await asyncio.wait_for(bridge.login(login["id"], wait=30), 5)

    assert expired["status"] == "expired"


async def test_a_slow_control_plane_gets_the_browser_a_finishing_page_at_once(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-slow")
    control_plane.script.hang = True  # the forward waits until released

    async with bridge.browser.get(
        f"{bridge.url}/callback/github?code=c&state=st-slow", allow_redirects=False
    ) as redirect:
        location = redirect.headers["Location"]
        status = redirect.status
    async with bridge.browser.get(f"{bridge.url}{location}") as page:
        finishing = await page.text()
    repeat, _, _ = await bridge.hit("code=c&state=st-slow")  # a reload of the callback
    control_plane.release.set()
    done = await bridge.login(login["id"], wait=10)
    async with bridge.browser.get(f"{bridge.url}{location}") as page:
        final = await page.text()

    assert (status, location) == (303, f"/result/{login['id']}")  # while the forward hung
    assert meta_status(finishing) == "forwarding"
    assert '<meta http-equiv="refresh" content="2">' in finishing
    assert "Finishing sign-in" in finishing
    assert repeat == 200
    assert done["status"] == "succeeded"
    assert meta_status(final) == "succeeded"
    assert 'http-equiv="refresh"' not in final
    assert len(control_plane.calls) == 1


async def test_a_failed_page_names_the_provider_and_speaks_to_the_user(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-words")
    control_plane.answer(401, {"detail": "Invalid API key"})

    status, page, _ = await bridge.hit("code=c&state=st-words")

    assert (status, meta_status(page)) == (200, "failed")
    assert "Could not connect to github" in page
    assert "LangSmith refused to finish the connection" in page
    for jargon in ("control plane", "callback", "HTTP 401", "API key", "Invalid API key"):
        assert jargon not in page


async def test_a_result_page_whose_login_was_forgotten_says_so(bridge: RunningDaemon) -> None:
    async with bridge.browser.get(f"{bridge.url}/result/forgotten-login-id") as response:
        page = await response.text()
        status = response.status

    assert (status, meta_status(page)) == (404, "unknown")
    assert "no longer kept here" in page


async def test_the_page_names_the_provider_and_the_application_as_configured(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    running: RunningDaemon = await start_daemon(
        config_text='provider_names = { github = "GitHub" }\n'
    )
    login = await running.register("github", "st-names", client_name="Acme CLI")

    _, page, _ = await running.hit("code=c&state=st-names")

    assert "Connected to GitHub" in page
    assert "return to Acme CLI" in page
    assert (await running.login(login["id"]))["status"] == "succeeded"


async def test_a_client_name_with_control_characters_is_refused(bridge: RunningDaemon) -> None:
    async with bridge.control.post(
        "http://bridge/v1/logins",
        json={"provider_id": "github", "state": "st-ctl", "client_name": "Acme\x1b[2J"},
    ) as response:
        assert response.status == 422
