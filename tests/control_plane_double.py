"""A control-plane double: a real aiohttp app with the callback and the Auth Service v2.

It behaves as the control plane's published API says: ``authenticate`` starts an auth
request (its URL names our redirect_uri when the provider allows it, else the hosted
page), ``wait`` is a real long-poll, the callback claims a request only with the same
credentials that started it, the hosted page finishes a flow itself, and providers
can be read and patched.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

API_KEY = "test-api-key-0123"
WORKSPACE_ID = "ws-42"
BEARER = "test-bearer-token-0456"


@dataclass
class Call:
    provider_id: str
    host: str
    raw_path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """What the double answers next; tests change it between calls."""

    # (status, headers, body bytes or JSON) answers to pop, one per call; then `default`.
    queue: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    hang: bool = False
    # Seconds to take over each answer: a slow control plane.
    delay: float = 0.0
    # Read the request, then close the connection without answering.
    drop: bool = False
    # Send the success body in two writes with a pause between, as a slow network does.
    split_body: bool = False
    # An Agent Auth request the callback claims: answer only after this long (the token
    # is stored first, as the real one does), or answer with this status all the same.
    after_claim_delay: float = 0.0
    after_claim_status: int | None = None


@dataclass
class AuthRequest:
    """One auth request, as the Auth Service keeps it."""

    auth_id: str
    provider_id: str
    user_id: str | None
    state: str
    credentials: tuple[str | None, ...]
    redirect_uri: str
    status: str = "pending"  # pending, completed, gone
    token: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, status: str, token: str | None = None) -> None:
        self.status, self.token = status, token
        self.changed.set()


DISABLED = "LangChain Agent Auth is not enabled for this organization"


class ControlPlaneDouble:
    """Records every call, checks the auth headers, validates the body like FastAPI."""

    def __init__(
        self,
        *,
        api_key: str | None = API_KEY,
        workspace_id: str | None = WORKSPACE_ID,
        bearer: str | None = BEARER,
    ) -> None:
        self.api_key = api_key
        self.workspace_id = workspace_id
        self.bearer = bearer
        self.calls: list[Call] = []
        self.script = Script()
        self.called = asyncio.Event()
        self.release = asyncio.Event()  # set to let a hanging answer go
        self.runner: web.AppRunner | None = None
        self.url = ""
        # The Auth Service v2.
        self.auth_calls: list[Call] = []  # authenticate, wait, providers: not the callback
        self.auth_requests: dict[str, AuthRequest] = {}
        # Each API key the double knows is one LangSmith user's; `tokens` is the first
        # user's (the daemon's key in most tests), `tokens_of` every user's.
        self.other_users: dict[str, str] = {}  # API key -> user, beside api_key's user-a
        self.tokens_of: dict[str, dict[tuple[str, str | None], str]] = {"user-a": {}}
        self.revoked: list[tuple[str, str]] = []  # (LangSmith user, provider) revoked
        self.provider_visits = 0  # browsers that reached the provider's page (serve_provider)
        # Set, authenticate waits for it before answering; `authenticating` says one came.
        self.authenticate_gate: asyncio.Event | None = None
        self.authenticating = asyncio.Event()
        # Every redirect_uri asked for is taken (the benchmarks' daemons have any port).
        self.allow_any_redirect = False
        self.agent_auth_enabled = True
        self.authenticate_answers: list[tuple[int, Any]] = []  # scripted answers, popped
        self.waits_in_flight = 0
        self.wait_failures = 0  # how many waits to answer 500 before answering for real
        self.most_waits_in_flight = 0
        self.providers: dict[str, dict[str, Any]] = {
            "github": {
                "provider_id": "github",
                "name": "GitHub",
                "client_id": "github-client-id",
                "auth_url": "https://github.invalid/login/oauth/authorize",
                "token_url": "https://github.invalid/login/oauth/access_token",
                "uses_pkce": False,
                "allowed_redirect_uris": [],
                "default_redirect_uri": None,
            }
        }
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/auth/callback/{provider_id}", self.callback)
        app.router.add_post("/v2/auth/authenticate", self.authenticate)
        app.router.add_get("/v2/auth/wait/{auth_id}", self.wait)
        app.router.add_get("/v2/auth/providers", self.list_providers)
        app.router.add_get("/v2/auth/providers/{provider_id}", self.get_provider)
        app.router.add_patch("/v2/auth/providers/{provider_id}", self.patch_provider)
        app.router.add_get("/host-oauth-callback/{provider_id}", self.hosted_page)
        app.router.add_get("/provider/authorize", self.provider_authorize)
        app.router.add_get("/v2/auth/tokens/exists", self.token_exists)
        app.router.add_delete("/v2/auth/tokens", self.revoke_tokens)
        return app

    # -- the Auth Service v2 ----------------------------------------------------------

    @property
    def tokens(self) -> dict[tuple[str, str | None], str]:
        """The tokens of the first LangSmith user: (provider, user_id) -> token."""
        return self.tokens_of["user-a"]

    def add_user(self, api_key: str, user: str) -> None:
        """Know another API key, as another LangSmith user's."""
        self.other_users[api_key] = user
        self.tokens_of.setdefault(user, {})

    def user_of(self, credentials: tuple[str | None, ...]) -> str:
        """Return the LangSmith user whose API key a call (or an auth request) carried."""
        return self.other_users.get(credentials[0] or "", "user-a")

    def allow(self, provider_id: str, redirect_uri: str) -> None:
        """List ``redirect_uri`` in the provider's allowed_redirect_uris (as an admin would)."""
        self.providers[provider_id]["allowed_redirect_uris"].append(redirect_uri)

    def request_for(self, auth_url: str) -> AuthRequest:
        """Return the auth request behind an authorization URL."""
        from urllib.parse import parse_qs, urlsplit

        state = parse_qs(urlsplit(auth_url).query)["state"][0]
        return next(r for r in self.auth_requests.values() if r.state == state)

    def forget(self, auth_id: str) -> None:
        """Let an auth request lapse: its wait answers not_found from now on."""
        self.auth_requests[auth_id].settle("gone")

    def _record(self, request: web.Request, body: Any = None) -> None:
        self.auth_calls.append(
            Call(
                provider_id=request.match_info.get("provider_id", ""),
                host=request.host,
                raw_path=request.raw_path,
                headers=dict(request.headers),
                body=body,
            )
        )

    def _caller(self, request: web.Request) -> tuple[str | None, ...]:
        return tuple(request.headers.get(k) for k in ("X-Api-Key", "X-Tenant-Id", "Authorization"))

    def _refusal(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        if not self.agent_auth_enabled:
            return web.json_response({"detail": DISABLED}, status=403)
        return None

    async def authenticate(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        self._record(request, body)
        self.authenticating.set()
        if self.authenticate_gate is not None:
            await self.authenticate_gate.wait()  # a control plane that takes its time
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if self.authenticate_answers:
            status, answer = self.authenticate_answers.pop(0)
            return web.json_response(answer, status=status)
        problems = [
            {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": body}
            for name in ("provider", "scopes")
            if not isinstance(body, dict) or name not in body
        ]
        if problems:
            return web.json_response({"detail": problems}, status=422)
        provider = self.providers.get(body["provider"])
        if provider is None:
            return web.json_response({"detail": "Provider not found"}, status=404)
        user_id = body.get("user_id")
        auth_id = f"auth-{next(self._ids)}"
        token = self.tokens_of[self.user_of(self._caller(request))].get(
            (provider["provider_id"], user_id)
        )
        if token is not None and not body.get("force_new"):
            return web.json_response(
                {"status": "completed", "auth_id": auth_id, "token": token, "user_id": user_id}
            )
        asked = body.get("redirect_uri")
        redirect_uri = (
            asked
            if asked in provider["allowed_redirect_uris"] or (asked and self.allow_any_redirect)
            else f"{self.url}/host-oauth-callback/{provider['provider_id']}"
        )
        state = f"{auth_id}.{secrets.token_urlsafe(16)}"
        self.auth_requests[auth_id] = AuthRequest(
            auth_id=auth_id,
            provider_id=provider["provider_id"],
            user_id=user_id,
            state=state,
            credentials=self._caller(request),
            redirect_uri=redirect_uri,
        )
        query = urlencode(
            {
                "client_id": provider["client_id"],
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": " ".join(body["scopes"]),
                "response_type": "code",
            }
        )
        return web.json_response(
            {"status": "pending", "url": f"{provider['auth_url']}?{query}", "auth_id": auth_id}
        )

    async def wait(self, request: web.Request) -> web.Response:
        self._record(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if self.wait_failures:
            self.wait_failures -= 1
            return web.json_response({"detail": "Internal Server Error"}, status=500)
        timeout = float(request.query.get("timeout", "30"))
        auth = self.auth_requests.get(request.match_info["auth_id"])
        self.waits_in_flight += 1
        self.most_waits_in_flight = max(self.most_waits_in_flight, self.waits_in_flight)
        try:
            if auth is not None and auth.status == "pending":
                auth.changed.clear()
                try:
                    await asyncio.wait_for(auth.changed.wait(), timeout)
                except TimeoutError:
                    return web.json_response({"status": "timeout", "token": None})
        finally:
            self.waits_in_flight -= 1
        if auth is None or auth.status == "gone":
            return web.json_response({"status": "not_found", "token": None})
        return web.json_response({"status": auth.status, "token": auth.token})

    async def list_providers(self, request: web.Request) -> web.Response:
        self._record(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        return web.json_response(list(self.providers.values()))

    async def get_provider(self, request: web.Request) -> web.Response:
        self._record(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        provider = self.providers.get(request.match_info["provider_id"])
        if provider is None:
            return web.json_response({"detail": "Provider not found"}, status=404)
        return web.json_response(provider)

    async def patch_provider(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        provider = self.providers.get(request.match_info["provider_id"])
        if provider is None:
            return web.json_response({"detail": "Provider not found"}, status=404)
        provider.update({k: v for k, v in body.items() if k in provider})
        return web.json_response(provider)

    async def token_exists(self, request: web.Request) -> web.Response:
        self._record(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        provider_id = request.query.get("provider_id", "")
        mine = self.tokens_of[self.user_of(self._caller(request))]
        return web.json_response({"has_token": any(p == provider_id for p, _ in mine)})

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        self._record(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        provider_id = request.query.get("provider_id", "")
        user = self.user_of(self._caller(request))
        mine = self.tokens_of[user]
        for key in [k for k in mine if k[0] == provider_id]:
            del mine[key]
        self.revoked.append((user, provider_id))
        return web.json_response({"deleted": True})

    def serve_provider(self, provider_id: str = "github", *, denies: bool = False) -> None:
        """Make the provider's sign-in a page of the double's, for a real browser to go through.

        It consents at once (a redirect to redirect_uri with a code and the state), or
        denies (error=access_denied), as the user would have at a real provider.
        """
        self.providers[provider_id]["auth_url"] = f"{self.url}/provider/authorize"
        self.provider_denies = denies

    async def provider_authorize(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "")
        answer = (
            {"error": "access_denied", "state": state}
            if getattr(self, "provider_denies", False)
            else {"code": f"code-{secrets.token_hex(4)}", "state": state}
        )
        self.provider_visits += 1
        target = f"{request.query.get('redirect_uri', '')}?{urlencode(answer)}"
        return web.Response(status=302, headers={"Location": target})

    async def hosted_page(self, request: web.Request) -> web.Response:
        """LangSmith's own callback page: it finishes the flow itself, for the user's browser."""
        state = request.query.get("state", "")
        auth = next((r for r in self.auth_requests.values() if r.state == state), None)
        if request.query.get("error"):
            # A denial: the page says so, and nothing is completed (the wait cannot tell).
            return web.Response(text="<h1>Not connected</h1>", content_type="text/html")
        if auth is None or auth.status != "pending":
            return web.Response(status=400, text="This sign-in link is no longer valid.")
        self._complete(auth)
        return web.Response(text="<h1>Connected</h1>", content_type="text/html")

    def _complete(self, auth: AuthRequest) -> None:
        token = f"token-{auth.provider_id}-{secrets.token_hex(8)}"
        self.tokens_of[self.user_of(auth.credentials)][(auth.provider_id, auth.user_id)] = token
        auth.settle("completed", token)

    async def start(self) -> None:
        await self.start_on(0)

    async def start_on(
        self,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        keepalive_timeout: float = 75.0,
    ) -> None:
        # handler_cancellation: a long-poll the daemon gives up on ends here too, as a
        # real server sees a closed connection.
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            shutdown_timeout=0.5,
            handler_cancellation=True,
            keepalive_timeout=keepalive_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self.runner = runner
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def open_connections(self) -> int:
        """How many client connections the double holds open right now."""
        server = self.runner.server if self.runner is not None else None
        return len(server.connections) if server is not None else 0

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.script.queue.append((status, headers or {}, body))

    async def callback(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.calls.append(
            Call(
                provider_id=request.match_info["provider_id"],
                host=request.host,
                raw_path=request.raw_path,
                headers=dict(request.headers),
                body=body,
            )
        )
        self.called.set()
        if self.script.hang:
            await self.release.wait()
        if self.script.drop and request.transport is not None:
            request.transport.close()
            return web.Response(status=204)  # never reaches the closed connection
        if self.script.delay:
            await asyncio.sleep(self.script.delay)  # the slowness under test, not a wait
        if not self._authorized(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        if self.script.queue:
            status, headers, answer = self.script.queue.pop(0)
            if isinstance(answer, bytes | str):
                return web.Response(status=status, headers=headers, body=answer)
            return web.json_response(answer, status=status, headers=headers)
        problems = validation_problems(body)
        if problems:
            return web.json_response({"detail": problems}, status=422)
        auth = next((r for r in self.auth_requests.values() if r.state == body["state"]), None)
        if auth is not None:
            # It claims the request only for the user who started it.
            if auth.credentials != self._caller(request):
                return web.json_response({"detail": "Auth request not found"}, status=404)
            if auth.status != "pending":
                return web.json_response({"detail": "Auth request already claimed"}, status=400)
            self._complete(auth)
            if self.script.after_claim_delay:
                await asyncio.sleep(self.script.after_claim_delay)  # the slowness under test
            if self.script.after_claim_status is not None:
                return web.json_response({"detail": "boom"}, status=self.script.after_claim_status)
        body = json.dumps({"connected": True, "provider_id": request.match_info["provider_id"]})
        if self.script.split_body:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(body[:10].encode())
            await asyncio.sleep(0.05)  # a slow network, not a wait for a condition
            await response.write(body[10:].encode())
            await response.write_eof()
            return response
        return web.Response(text=body, content_type="application/json")

    def _authorized(self, request: web.Request) -> bool:
        key = request.headers.get("X-Api-Key")
        if self.api_key is not None and key != self.api_key and key not in self.other_users:
            return False
        expected = {
            "X-Tenant-Id": self.workspace_id,
            "Authorization": f"Bearer {self.bearer}" if self.bearer else None,
        }
        return all(request.headers.get(k) == v for k, v in expected.items() if v is not None)


def validation_problems(body: Any) -> list[dict[str, Any]]:
    """Validate OAuthFinalizeRequest the way FastAPI does, echoing the input as it does."""
    if not isinstance(body, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary",
                "input": body,
            }
        ]
    problems = []
    for name in ("code", "state"):
        if name not in body:
            problems.append(
                {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": body}
            )
        elif not isinstance(body[name], str):
            problems.append(
                {
                    "type": "string_type",
                    "loc": ["body", name],
                    "msg": "Input should be a valid string",
                    "input": body[name],
                }
            )
    return problems
