"""The demo's stand-ins: an OAuth provider and a control plane, both real aiohttp apps.

They are small but honest: the provider issues one-time codes bound to a state and a
redirect URI; the control plane speaks the Auth Service v2 (authenticate makes the
state, wait is a real long-poll) and accepts a callback only for a state it made and a
code the provider issued for it, as the real ones do.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

DEMO_API_KEY = "demo-api-key"  # a stand-in for the demo control plane only
PROVIDER_ID = "demo-provider"


@dataclass
class Grant:
    state: str
    redirect_uri: str


@dataclass
class AuthRequest:
    state: str
    token: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class DemoWorld:
    """What the demo provider issued and what the demo control plane finalized."""

    provider_url: str = ""
    control_plane_url: str = ""
    states: set[str] = field(default_factory=set)
    auth_requests: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    finalized: list[dict[str, Any]] = field(default_factory=list)
    forward_seconds: float = 0.0


def provider_app(world: DemoWorld) -> web.Application:
    async def authorize(request: web.Request) -> web.Response:
        q = request.query
        approve = "/approve?" + urlencode(
            {"state": q.get("state", ""), "redirect_uri": q.get("redirect_uri", "")}
        )
        deny = "/deny?" + urlencode(
            {"state": q.get("state", ""), "redirect_uri": q.get("redirect_uri", "")}
        )
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Demo provider</title></head><body style='font-family:sans-serif'>"
            "<h1>Demo provider</h1><p><b>oauth-bridge demo</b> wants to connect to your "
            f"demo account (client <code>{escape(q.get('client_id', '?'))}</code>).</p>"
            f"<p><a id='approve' href='{escape(approve)}'>Authorize</a> · "
            f"<a id='deny' href='{escape(deny)}'>Deny</a></p></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def approve(request: web.Request) -> web.Response:
        code = "demo-code-" + secrets.token_urlsafe(12)
        world.codes[code] = Grant(request.query["state"], request.query["redirect_uri"])
        target = (
            request.query["redirect_uri"]
            + "?"
            + urlencode({"code": code, "state": request.query["state"], "iss": world.provider_url})
        )
        raise web.HTTPFound(target)

    async def deny(request: web.Request) -> web.Response:
        target = (
            request.query["redirect_uri"]
            + "?"
            + urlencode(
                {
                    "error": "access_denied",
                    "error_description": "The user said no.",
                    "state": request.query["state"],
                }
            )
        )
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_get("/authorize", authorize)
    app.router.add_get("/approve", approve)
    app.router.add_get("/deny", deny)
    return app


def control_plane_app(world: DemoWorld) -> web.Application:
    async def authenticate(request: web.Request) -> web.Response:
        """Start a login: make a state and an authorization URL, as the real one does."""
        if request.headers.get("X-Api-Key") != DEMO_API_KEY:
            return web.json_response({"detail": "Invalid API key"}, status=401)
        body = await request.json()
        if not body.get("redirect_uri"):
            detail = "the demo control plane has no hosted page: it needs a redirect_uri"
            return web.json_response({"detail": detail}, status=400)
        state = secrets.token_urlsafe(24)
        auth_id = secrets.token_hex(8)
        world.states.add(state)
        world.auth_requests[auth_id] = AuthRequest(state)
        auth_url = f"{world.provider_url}/authorize?" + urlencode(
            {
                "response_type": "code",
                "client_id": "oauth-bridge-demo",
                "redirect_uri": body["redirect_uri"],
                "scope": " ".join(body.get("scopes", [])),
                "state": state,
            }
        )
        return web.json_response({"status": "pending", "url": auth_url, "auth_id": auth_id})

    async def wait(request: web.Request) -> web.Response:
        """Long-poll an auth request until it completes or the timeout runs out."""
        auth = world.auth_requests.get(request.match_info["auth_id"])
        if auth is None:
            return web.json_response({"status": "not_found", "token": None})
        try:
            await asyncio.wait_for(auth.done.wait(), float(request.query.get("timeout", "30")))
        except TimeoutError:
            return web.json_response({"status": "timeout", "token": None})
        return web.json_response({"status": "completed", "token": auth.token})

    async def callback(request: web.Request) -> web.Response:
        started = time.perf_counter()
        if request.headers.get("X-Api-Key") != DEMO_API_KEY:
            return web.json_response({"detail": "Invalid API key"}, status=401)
        try:
            body = json.loads(await request.read())
            code, state = body["code"], body["state"]
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"detail": [{"loc": ["body"], "msg": "Field required", "type": "missing"}]},
                status=422,
            )
        grant = world.codes.pop(code, None)  # a code is good once
        if state not in world.states or grant is None or grant.state != state:
            return web.json_response({"detail": "Unknown or used code"}, status=400)
        world.states.discard(state)
        for auth in world.auth_requests.values():
            if auth.state == state:
                auth.token = "demo-token-" + secrets.token_urlsafe(8)
                auth.done.set()
        result = {
            "connected": True,
            "provider_id": request.match_info["provider_id"],
            "account": "demo-user",
        }
        world.finalized.append(result)
        world.forward_seconds = time.perf_counter() - started
        return web.json_response(result)

    app = web.Application()
    app.router.add_post("/v2/auth/authenticate", authenticate)
    app.router.add_get("/v2/auth/wait/{auth_id}", wait)
    app.router.add_post("/v2/auth/callback/{provider_id}", callback)
    return app


class DemoServers:
    """Run both stand-ins on 127.0.0.1 in a background thread's event loop."""

    def __init__(self) -> None:
        self.world = DemoWorld()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []

    def __enter__(self) -> DemoWorld:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self.world

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        for app, attr in (
            (provider_app(self.world), "provider_url"),
            (control_plane_app(self.world), "control_plane_url"),
        ):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.runners.append(runner)
            setattr(self.world, attr, f"http://127.0.0.1:{runner.addresses[0][1]}")

    async def _stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
