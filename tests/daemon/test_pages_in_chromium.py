"""The result pages in a real headless Chromium (Debian's), reached from a provider on another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from bridge.demo.servers import DemoWorld, provider_app
from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, which this
# machine's closed network refuses; as root it also needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def provider() -> AsyncIterator[str]:
    """The OAuth provider: a real aiohttp app on another origin (its own port)."""
    world = DemoWorld()
    app = provider_app(world)

    async def form_post(request: web.Request) -> web.Response:
        # response_mode=form_post: the provider's page POSTs code and state to the callback.
        q = request.query
        page = (
            f"<form id='f' method='post' action='{q['redirect_uri']}'>"
            f"<input type='hidden' name='code' value='formcode'>"
            f"<input type='hidden' name='state' value='{q['state']}'>"
            "<button id='send'>Continue</button></form>"
        )
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/form_post", form_post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    world.provider_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield world.provider_url
    await runner.cleanup()


async def status_of(page: Page) -> str | None:
    return await page.get_attribute('meta[name="oauth-bridge-status"]', "content")


async def authorize(
    page: Page, provider: str, bridge: RunningDaemon, state: str, path: str = "/authorize"
) -> None:
    await page.goto(
        f"{provider}{path}?"
        + urlencode(
            {"state": state, "redirect_uri": f"{bridge.url}/callback/github", "client_id": "t"}
        )
    )


async def test_a_provider_redirect_lands_on_the_result_page_without_the_code(
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    browser: Browser,
    provider: str,
    tmp_path: Path,
) -> None:
    login = await bridge.register("github", "st-chromium")
    page = await browser.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    await authorize(page, provider, bridge, "st-chromium")

    await page.click("#approve")
    await page.wait_for_url(f"{bridge.url}/result/{login['id']}")

    assert await status_of(page) == "succeeded"
    assert "code=" not in page.url
    assert "st-chromium" not in page.url
    assert await page.text_content("h1") == "Connected to github"
    assert blocked == []  # the page needs nothing its CSP forbids
    await page.screenshot(path=str(tmp_path / "succeeded.png"))
    await page.reload()
    assert await status_of(page) == "succeeded"
    assert len(control_plane.calls) == 1


async def test_a_denial_shows_the_denied_page(
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    browser: Browser,
    provider: str,
) -> None:
    await bridge.register("github", "st-deny")
    page = await browser.new_page()
    await authorize(page, provider, bridge, "st-deny")

    await page.click("#deny")
    await page.wait_for_url(f"{bridge.url}/result/**")

    assert await status_of(page) == "denied"
    assert "The user said no." in (await page.text_content("body") or "")
    assert "error=" not in page.url
    assert control_plane.calls == []


async def test_a_form_post_callback_ends_on_a_clean_result_page(
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    browser: Browser,
    provider: str,
) -> None:
    login = await bridge.register("github", "st-form")
    page = await browser.new_page()
    await authorize(page, provider, bridge, "st-form", path="/form_post")

    await page.click("#send")
    await page.wait_for_url(f"{bridge.url}/result/{login['id']}")

    assert await status_of(page) == "succeeded"
    assert [c.body for c in control_plane.calls] == [{"code": "formcode", "state": "st-form"}]


async def test_an_unknown_state_page_leaves_no_code_in_the_address_bar(
    bridge: RunningDaemon,
    browser: Browser,
    provider: str,
) -> None:
    page = await browser.new_page()
    await authorize(page, provider, bridge, "never-registered")

    await page.click("#approve")
    await page.wait_for_url(f"{bridge.url}/result/-/unknown**")

    assert await status_of(page) == "unknown"
    assert "code=" not in page.url


async def colours(page: Page) -> tuple[str, str]:
    """The body's background and the heading's text colour, as Chromium computes them."""
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    text = await page.evaluate("getComputedStyle(document.querySelector('h1')).color")
    return str(background), str(text)


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_a_slow_forward_shows_finishing_then_reloads_itself_into_the_outcome(
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    browser: Browser,
    provider: str,
    scheme: str,
) -> None:
    login = await bridge.register("github", f"st-slow-{scheme}")
    control_plane.script.delay = 4.0  # longer than the callback's and the page's first look
    page = await browser.new_page(color_scheme=scheme)  # type: ignore[arg-type]
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    await authorize(page, provider, bridge, f"st-slow-{scheme}")

    await page.click("#approve")
    await page.wait_for_url(f"{bridge.url}/result/{login['id']}")
    first = await status_of(page)
    first_colours = await colours(page)
    await page.wait_for_selector(
        'meta[name="oauth-bridge-status"][content="succeeded"]', state="attached", timeout=15000
    )

    assert first == "forwarding"  # the tab was not left blank for the forward
    assert await page.text_content("h1") == "Connected to github"
    assert first_colours[0] != first_colours[1]  # readable in this colour scheme
    assert blocked == []  # the reload needs no script: a meta refresh
    assert len(control_plane.calls) == 1


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_home_and_a_missing_page_are_ours_in_both_schemes(
    bridge: RunningDaemon, browser: Browser, scheme: str
) -> None:
    page = await browser.new_page(color_scheme=scheme)  # type: ignore[arg-type]

    await page.goto(f"{bridge.url}/")
    home = (await status_of(page), await page.text_content("h1"), await colours(page))
    await page.goto(f"{bridge.url}/nothing/here")
    missing = await status_of(page)

    assert home[:2] == ("unknown", "oauth-bridge is running")
    background, text = home[2]
    assert background != text
    assert missing == "unknown"
