"""The TCP side, for browsers: the callback, its result page, and a health check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiDict, MultiMapping

from bridge import __version__
from bridge.daemon.callback import (
    FIRST_LOOK_SECONDS,
    NOT_NOW,
    REASONS,
    CallbackResult,
    handle_callback,
)
from bridge.daemon.model import Login, Status
from bridge.daemon.pages import render, render_home, render_self_test
from bridge.daemon.same_user import own_user_only
from bridge.daemon.services import SERVICES, Services, services

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none';"
        " base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Server": f"oauth-bridge/{__version__}",
}


@web.middleware
async def require_own_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 421 to a Host that is not ours: a DNS-rebinding page must not reach us."""
    if request.headers.get("Host", "").lower() not in services(request.app).allowed_hosts:
        # One of our pages like every answer of this port, naming no host of the request's.
        return page_response("invalid", status=421, reason="wrong-host")
    return await handler(request)


@web.middleware
async def our_pages_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a path or method we do not serve with one of our pages, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return page_response("unknown", status=404, reason="not-a-page")
    except web.HTTPMethodNotAllowed as refused:
        response = page_response("unknown", status=405, reason="not-a-page")
        response.headers["Allow"] = ", ".join(sorted(refused.allowed_methods))
        return response


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # A signal, not a middleware: it also covers aiohttp's own 404 and 405 answers.
    response.headers.update(SECURITY_HEADERS)
    # No touch() here: only what a login of ours does counts as activity (the handlers
    # say so), so that a stray request (a scanner, a favicon, another user's refused one)
    # never keeps the daemon from idling out.


def page_response(
    page_status: str,
    *,
    status: int,
    reason: str = "",
    login: Login | None = None,
    provider_names: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        text=render(
            page_status,
            reason=REASONS.get(reason, ""),
            login=login,
            provider_names=provider_names,
        ),
        status=status,
        content_type="text/html",
        charset="utf-8",
    )


def is_prefetch(request: web.Request) -> bool:
    """Say whether the browser is only speculating: such a request must consume nothing."""
    headers = request.headers
    purpose = (
        headers.get("Sec-Purpose")
        or headers.get("Purpose")
        or headers.get("X-Purpose")
        or headers.get("X-Moz")
    )
    if not purpose:
        return False
    purpose = purpose.lower()
    return "prefetch" in purpose or "prerender" in purpose


async def callback(request: web.Request) -> web.StreamResponse:
    """Receive the provider's redirect (GET, or POST for response_mode=form_post)."""
    if is_prefetch(request):
        # 425 Too Early: a speculative fetch must not consume the state; the real
        # navigation, which follows, does. (Not a 5xx: nothing failed here.)
        return page_response("unknown", status=425, reason="prefetch")
    bridge = services(request.app)
    params: MultiMapping[str]
    if request.method == "POST":
        try:
            # A body that trickles in is cut off like a request head that does.
            async with asyncio.timeout(bridge.config.settings.connection_idle_seconds):
                form = await request.post()
        except (
            ValueError,
            LookupError,
            UnicodeDecodeError,
            AssertionError,
            RequestPayloadError,
            HttpProcessingError,
            TimeoutError,
        ):
            # A form aiohttp cannot read: a multipart without boundary, a bogus charset, a
            # Content-Encoding the body does not have, a body that never ends. Close the
            # connection after the answer: what is left of that body is not worth reading.
            refused = see_other(refusal_location("invalid", "malformed-body"))
            refused.force_close()
            return refused
        params = MultiDict((k, v) for k, v in form.items() if isinstance(v, str))
    else:
        params = request.query
    outcome = await handle_callback(
        logins=bridge.logins,
        control_plane=bridge.control_plane,
        agent_auth=bridge.agent_auth,
        provider_id=request.match_info["provider_id"],
        params=params,
        wait_seconds=FIRST_LOOK_SECONDS,
        from_browser=True,
    )
    if outcome.login is not None:
        bridge.touch()  # a callback of a login of ours: activity
    if bridge.logins.stopping or outcome.reason in NOT_NOW:
        # Shutting down (a redirect would land on a closed port) or short of resources:
        # the page is shown right here, so that reloading this address completes it.
        return page_response(
            outcome.page_status,
            status=outcome.http_status,
            reason=outcome.reason,
            login=outcome.login,
            provider_names=bridge.config.settings.provider_names,
        )
    # 303 to a clean address: the code leaves the address bar and the history, and a
    # reload shows the outcome again instead of replaying the callback.
    return see_other(result_location(bridge, outcome))


async def go(request: web.Request) -> web.StreamResponse:
    """The trampoline: send the browser on to its login's authorization URL, once."""
    bridge = services(request.app)
    token = request.match_info["token"]
    if is_prefetch(request):
        # A speculative fetch spends nothing: the real navigation that follows does.
        return page_response("unknown", status=425, reason="prefetch")
    jump = bridge.trampolines.take(token)
    login = None if jump is None else bridge.logins.get(jump.login_id)
    if jump is None or login is None or login.status is not Status.PENDING:
        return page_response("unknown", status=404, reason="spent")
    bridge.logins.browser_seen(login.id)
    bridge.touch()
    # 302, not 303 or a page: the provider's address is the whole point of this one.
    return web.Response(status=302, headers={"Location": jump.auth_url})


def forbidden(request: web.Request) -> web.StreamResponse:
    """The page for a connection of another local user: it consumed nothing."""
    return page_response("forbidden", status=403, reason="other-user")


def see_other(location: str) -> web.Response:
    # A plain response: raising web.HTTPSeeOther builds an exception and a text body,
    # a sixth of a callback's time in the profile (docs/profiles/forward-c32.txt).
    return web.Response(status=303, headers={"Location": location})


def refusal_location(page_status: str, reason: str) -> str:
    # Both parts are fixed keys (a page status, a REASONS key): nothing to encode.
    return f"/result/-/{page_status}?why={reason}"


def result_location(bridge: Services, outcome: CallbackResult) -> str:
    if outcome.login is None:
        return refusal_location(outcome.page_status, outcome.reason)
    success_url = bridge.config.settings.success_url
    if success_url is not None and outcome.login.status is Status.SUCCEEDED:
        return str(success_url)
    return f"/result/{outcome.login.id}"


async def result(request: web.Request) -> web.Response:
    """Show a login's outcome: where the callback lands, and what a reload shows."""
    bridge = services(request.app)
    login = bridge.logins.get(request.match_info["login_id"])
    if login is None:
        # A result address is only ever given for a real login: its retention ran out.
        return page_response("unknown", status=404, reason="forgotten")
    bridge.touch()
    if not login.status.terminal:
        # Not known yet (a slow control plane): the page says so and reloads itself.
        login = await bridge.logins.wait_terminal(login.id, FIRST_LOOK_SECONDS) or login
    return page_response(
        login.status.value,
        status=200,
        login=login,
        provider_names=bridge.config.settings.provider_names,
    )


async def refused(request: web.Request) -> web.Response:
    """Show why a callback touched no login."""
    page_status = request.match_info["page_status"]
    reason = request.query.get("why", "")
    return page_response(
        page_status,
        status=400 if page_status == "invalid" else 404,
        reason=reason if reason in REASONS else "",
    )


async def home(request: web.Request) -> web.Response:
    """Say that the bridge runs, to a user who typed its address."""
    return web.Response(text=render_home(), content_type="text/html", charset="utf-8")


async def self_test(request: web.Request) -> web.Response:
    """Answer doctor's one-time address: it proves a browser here reaches the daemon."""
    seen = services(request.app).browser_checks.open(request.match_info["token"])
    return web.Response(
        text=render_self_test(seen),
        status=200 if seen else 404,
        content_type="text/html",
        charset="utf-8",
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_browser_app(bridge: Services) -> web.Application:
    """Build the browser-facing app; it does no I/O until served."""
    # Another local user's connection is refused before any handler runs: it spends no
    # trampoline and consumes no state.
    app = web.Application(
        middlewares=[require_own_host, own_user_only(refuse=forbidden), our_pages_only]
    )
    app[SERVICES] = bridge
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/callback/{provider_id}", callback, allow_head=False)
    app.router.add_post("/callback/{provider_id}", callback)
    app.router.add_get("/result/-/{page_status:invalid|unknown}", refused, allow_head=False)
    app.router.add_get("/result/{login_id}", result, allow_head=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", home, allow_head=False)
    app.router.add_get("/self-test/{token}", self_test, allow_head=False)
    app.router.add_get("/go/{token}", go, allow_head=False)
    return app
